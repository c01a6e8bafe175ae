"""The drawing parts under `lab.views.charts`: fresh plotext figures, ticks, legends, colours
and number formats. Private to the charts; split off so each file holds one thing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Below this size plotext still draws but the result is unreadable; a short note is more honest.
MIN_WIDTH = 16
MIN_HEIGHT = 4

# Eleven hues readable on dark and light terminals. The count is prime on purpose: with the
# polynomial hash in ``cp.stable_index`` two names that differ in a single character (by fewer
# than 11 code points, e.g. "Level 1" / "Level 2" / "Level 3") can never share a colour.
PALETTE: tuple[str, ...] = (
    "#4c9be8",  # blue
    "#f28e2b",  # orange
    "#59c45a",  # green
    "#e15759",  # red
    "#b07aea",  # purple
    "#17becf",  # cyan
    "#edc948",  # yellow
    "#ff9da7",  # pink
    "#c49c6a",  # tan
    "#bab0ac",  # grey
    "#d37295",  # rose
)


def series_color(name: str) -> str:
    """Colour ("#rrggbb") for a run name, identical in every process and every chart.

    Python's ``hash()`` is salted per process, so a tiny fixed polynomial hash is used
    instead; the CLI, the TUI and a later session all agree on a run's colour.
    """
    return PALETTE[stable_index(name, len(PALETTE))]

# The colour names plotext 6 understands besides "#rrggbb" (kept here because plotext only
# lists them in a private module).
PLOTEXT_COLOR_NAMES = frozenset(
    {
        "black", "white", "gray", "gray+", "red", "red+", "green", "green+",
        "orange", "orange+", "blue", "blue+", "magenta", "magenta+", "cyan", "cyan+",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Style:
    """How one series is drawn, so series stay distinguishable without colour (logs)."""

    line: str  # plotext marker code used for the connecting line
    glyph: str  # what the legend row shows for that line
    point: str  # marker stamped on each data point when there is room for it


def stable_index(name: str, modulus: int) -> int:
    """Polynomial string hash modulo ``modulus``; same answer in every Python process."""
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) % modulus
    return h


def new_figure(width: int, height: int) -> Any:
    """A private plotext figure of exactly ``width`` x ``height`` cells.

    A new plotext terminal object owns its own master figure; switching its size limits off
    stops plotext from shrinking the chart to the size of whatever terminal (or pipe) the
    process happens to run in.
    """
    import plotext as plt  # here, not at the top: the console's first screen draws no chart

    if not (hasattr(plt, "terminal") and hasattr(plt, "figure")):
        found = getattr(plt, "__version__", "?")
        raise RuntimeError(f"lab.views.charts needs plotext >= 6.1 (figure/terminal API), "
                           f"found {found}")
    terminal = type(plt.terminal)()
    terminal.limit(False, False)
    fig = terminal._master
    fig.plot_size(width, height)
    return fig


def render(fig: Any, color: bool) -> str:
    """Build the figure matrix into text; colourless text also loses trailing blanks."""
    text = fig.build().string(colorless=not color)
    if not color:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text.rstrip("\n")


def draw_series(
    plot: Any,
    xs: Sequence[float],
    ys: Sequence[float],
    style: Style,
    colour: str,
    show_points: bool,
) -> None:
    """One connected line, plus a marker per point when they are few enough to read."""
    import plotext as plt

    rgb = plotext_color(colour)
    line = plot.signal(list(xs), list(ys), marker=plt.marker(style.line, pixel=plt.pixel(rgb)))
    line.lines()
    plot.draw(line)
    if show_points or len(xs) == 1:
        dots = plot.signal(list(xs), list(ys), marker=plt.marker(style.point, pixel=plt.pixel(rgb)))
        plot.draw(dots)


def band_edges(band: Iterable[Sequence[Any]]) -> tuple[list[tuple[float, float]],
                                                        list[tuple[float, float]]]:
    """The (x, y) points of a band's lower and upper edge, in x order, non-numbers dropped."""
    rows = sorted((x, lo, hi) for x, lo, hi in ((num(b[0]), num(b[1]), num(b[2])) for b in band)
                  if x is not None and lo is not None and hi is not None)
    return [(x, lo) for x, lo, _ in rows], [(x, hi) for x, _, hi in rows]


def draw_band(plot: Any, low: Sequence[tuple[float, float]],
              high: Sequence[tuple[float, float]], colour: str) -> None:
    """A band as its two edges (thin lines) and a bar from low to high at each point, in a
    dimmer shade of ``colour``; drawn before the series so the series stays on top."""
    import plotext as plt

    if not low:
        return
    shade = plt.pixel(plotext_color(dim_color(colour)))
    xs = [x for x, _ in high]
    for edge in (low, high):
        line = plot.signal(xs, [y for _, y in edge], marker=plt.marker("·", pixel=shade))
        line.lines()
        plot.draw(line)
    bars = plot.signal(xs, [y for _, y in high], marker=plt.marker("·", pixel=shade))
    for i, (x, y) in enumerate(low):
        bars._set_fill_point(i, x, y, plt.marker("·", pixel=shade))
    plot.draw(bars)


def dim_color(colour: str, share: float = 0.45) -> str:
    """``colour`` ("#rrggbb") moved ``share`` of the way to mid grey: the same hue, quieter on
    a dark and on a light background alike."""
    rgb = plotext_color(colour)
    if isinstance(rgb, str):  # a plotext colour name: its plain (not "+") variant
        return rgb.rstrip("+")
    mixed = (round(c + (128 - c) * share) for c in rgb)
    return "#" + "".join(f"{c:02x}" for c in mixed)


def point_budget(panel_width: int) -> int:
    """How many per-point markers fit in a panel before they merge into a smear."""
    return max(1, (panel_width - 8) // 3)


def set_x_ticks(plot: Any, xs: Sequence[float], panel_width: int) -> None:
    """Integer ticks (epochs, steps) spaced so their labels never collide."""
    lo, hi = math.floor(min(xs)), math.ceil(max(xs))
    if lo == hi:
        plot.ruler("x").lim(lo - 1, hi + 1)
        plot.ruler("x").ticks([lo], [fmt_int(lo)])
        return
    label_width = max(len(fmt_int(lo)), len(fmt_int(hi))) + 2
    max_ticks = max(2, (panel_width - 8) // label_width)
    positions = nice_ticks(lo, hi, max_ticks, integer=True)
    plot.ruler("x").ticks(positions, [fmt_int(p) for p in positions])


def nice_ticks(lo: float, hi: float, max_ticks: int, *, integer: bool = False) -> list[float]:
    """Multiples of a 1-2-5 step inside [lo, hi], at most ``max_ticks`` of them.

    plotext's own ticks split the range evenly (0.0, 14.8, 29.6, ...), which is hard to read.
    """
    span = hi - lo
    if span <= 0:
        return [lo]
    step = 10.0 ** math.floor(math.log10(span / max(1, max_ticks)))
    if integer:
        step = max(step, 1.0)
    while True:
        for mult in (1, 2, 5):
            s = step * mult
            first = math.ceil(lo / s - 1e-9) * s
            count = math.floor((hi - first) / s + 1e-9) + 1
            if count <= max_ticks:
                ticks = [round(first + i * s, 12) for i in range(max(0, count))]
                return ticks or [lo]
        step *= 10


@dataclass(frozen=True)
class EvenAxis:
    """Axis limits and ticks that put every tick the same number of cells from the next."""

    lo: float
    hi: float
    ticks: list[float]
    labels: list[str]


def even_axis(lo: float, hi: float, cells: int, min_gap: int, *,
              integer: bool = False, inside: bool = False) -> EvenAxis | None:
    """Ticks at multiples of a 1-2-5 step, ``gap`` cells apart, on an axis ``cells`` long.

    plotext puts a value at cell ``round((v - lo) / (hi - lo) * (cells - 1))``, so ticks at
    even values land on uneven cells (rows 0, 2, 3, 4, 6) unless one cell is worth exactly
    ``step / gap``: the limits are widened to multiples of that, just enough to hold the data.
    The finest step whose ticks are ``min_gap`` apart or more wins unless it leaves more than
    a quarter of the axis empty; then, of the first few, the one that wastes least. None when the
    axis is too short or the data has no span. ``inside``: ticks only where there is data (no
    epoch 6 under a run of 5).
    """
    span = hi - lo
    if cells < 2 or span <= 0 or not math.isfinite(span):
        return None
    per_cell = span / (cells - 1)  # the least a cell can be worth: the data fills the axis
    step = 10.0 ** math.floor(math.log10(per_cell * min_gap))
    best: tuple[float, EvenAxis] | None = None
    tried = 0
    while tried < 3 and step <= span * 10:
        for mult in (1, 2, 5):
            s = step * mult
            if integer and s < 1:
                continue
            found = _place(lo, hi, cells, min_gap, s, per_cell, inside)
            if found is None:
                continue
            tried += 1
            axis_lo, axis_hi, ticks = found
            waste = (axis_hi - axis_lo - span) / (axis_hi - axis_lo)
            labels = [fmt_int(t) if integer else fmt_tick(t, ticks) for t in ticks]
            if best is None or waste < best[0] - 1e-9:
                best = (waste, EvenAxis(axis_lo, axis_hi, ticks, labels))
            if waste <= 0.25:
                return best[1]
        step *= 10
    return best[1] if best else None


def _place(lo: float, hi: float, cells: int, min_gap: int, s: float, per_cell: float,
           inside: bool) -> tuple[float, float, list[float]] | None:
    """Axis limits for ticks every ``s``: the most cells between ticks (the finest cell) whose
    axis holds the data and shows two ticks or more. A tick falls on a cell only every ``gap``
    cells, so the axis may start up to ``gap - 1`` cells lower to bring a second tick in."""
    for gap in range(min(cells - 1, math.floor(s / per_cell + 1e-9)), min_gap - 1, -1):
        unit = s / gap
        base = math.floor(lo / unit + 1e-9)
        for first in range(base, base - gap, -1):
            if (first + cells - 1) * unit < hi - 1e-9 * abs(hi):
                break  # starting lower only loses more of the top
            axis_lo, axis_hi = first * unit, (first + cells - 1) * unit
            tick_lo, tick_hi = (lo, hi) if inside else (axis_lo, axis_hi)
            k0, k1 = math.ceil(tick_lo / s - 1e-9), math.floor(tick_hi / s + 1e-9)
            if k1 > k0:
                return axis_lo, axis_hi, [round(k * s, 12) for k in range(k0, k1 + 1)]
    return None


def set_even_ticks(plot: Any, xs: Sequence[float], ys: Sequence[float], width: int,
                   rows: int) -> None:
    """Evenly spaced ticks on both axes of one plot ``width`` columns wide with ``rows`` rows
    of plot area; where an axis cannot have them (no span, too small) plotext's own rules.
    Integer x values (epochs, steps) get integer ticks."""
    y_axis = even_axis(min(ys), max(ys), rows, 2 if rows >= 5 else 1) if ys else None
    if y_axis is None:
        pad_degenerate_y(plot, ys)
    else:
        plot.ruler("y").lim(y_axis.lo, y_axis.hi)
        plot.ruler("y").ticks(y_axis.ticks, y_axis.labels)
    integer = all(float(x).is_integer() for x in xs)
    x_axis = None
    if y_axis is not None and integer:  # the plot area's width needs the y labels' width
        cells = width - max(len(label) for label in y_axis.labels) - 2
        label = max(len(fmt_int(min(xs))), len(fmt_int(max(xs))))
        for inside, gap in ((True, label + 2), (False, label + 2), (False, label + 1)):
            x_axis = even_axis(min(xs), max(xs), cells, gap, integer=True, inside=inside)
            if x_axis is not None:  # the roomiest that fits: ticks under the data first
                break
    if x_axis is not None:
        plot.ruler("x").lim(x_axis.lo, x_axis.hi)
        plot.ruler("x").ticks(x_axis.ticks, x_axis.labels)
    elif integer:
        set_x_ticks(plot, xs, width)
    elif max(xs) == min(xs):
        plot.ruler("x").lim(xs[0] - 1, xs[0] + 1)


def plot_rows(height: int, title: bool, xlabel: bool) -> int:
    """Rows of plot area in a plotext plot ``height`` rows tall: less the title, the x label,
    the frame's two lines and the row of x ticks."""
    return height - int(title) - int(xlabel) - 3


def fmt_tick(v: float, ticks: Sequence[float]) -> str:
    """Tick label with just the decimals the tick spacing needs."""
    if all(float(t).is_integer() for t in ticks):
        return fmt_int(v)
    step = min((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=abs(v) or 1.0)
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{v:.{decimals}f}"


def pad_degenerate_y(plot: Any, ys: Sequence[float]) -> None:
    """Give a flat series some vertical room; plotext alone centres it on odd ±1 limits."""
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    if hi - lo > 1e-9 * max(1.0, abs(hi)):
        return
    pad = max(abs(hi) * 0.05, 1e-3)
    plot.ruler("y").lim(lo - pad, hi + pad)


def legend_rows(
    entries: Iterable[tuple[Style, str, str]], width: int, color: bool, show_points: bool
) -> list[str]:
    """Legend as text rows under the chart, wrapped to ``width``.

    plotext's in-canvas legend box covers the data in the top-left corner and overflows
    small panels, so the legend lives outside the canvas instead.
    """
    import plotext as plt

    items: list[tuple[str, int]] = []  # (rendered text, visible width)
    for style, colour, label in entries:
        sample = f"{style.glyph}{style.point}{style.glyph}" if show_points else style.glyph * 2
        label = ellipsize(label, max(1, width - len(sample) - 1))
        shown = sample
        if color:
            shown = plt.colorize(sample, plt.pixel(plotext_color(colour))).string()
        items.append((f"{shown} {label}", len(sample) + 1 + len(label)))

    rows: list[str] = []
    current, current_width = "", 0
    for text, w in items:
        if current and current_width + 3 + w > width:
            rows.append(center(current, current_width, width))
            current, current_width = "", 0
        if current:
            current, current_width = current + "   " + text, current_width + 3 + w
        else:
            current, current_width = text, w
    if current:
        rows.append(center(current, current_width, width))
    return rows


def center(text: str, visible: int, width: int) -> str:
    return " " * max(0, (width - visible) // 2) + text


def split_height(height: int, legend_rows: list[str]) -> tuple[int, list[str]]:
    """Share ``height`` between the plot and the legend; the plot keeps at least 4 rows."""
    keep = min(len(legend_rows), max(0, height - MIN_HEIGHT), max(1, height // 4))
    return height - keep, legend_rows[:keep]


def join(text: str, extra_rows: list[str]) -> str:
    return "\n".join([text, *extra_rows]) if extra_rows else text


def last_per_epoch(epochs: Iterable[dict]) -> dict[int, dict]:
    """Epoch number -> record; a resumed run may log an epoch twice and the last one wins."""
    rows: dict[int, dict] = {}
    for record in epochs:
        if record.get("event", "epoch") != "epoch":
            continue
        e = num(record.get("epoch"))
        if e is not None:
            rows[int(e)] = record
    return rows


def num(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN / inf values (diverged runs)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def pick_color(name: str, colors: Mapping[str, str] | None) -> str:
    if colors and name in colors:
        plotext_color(colors[name])  # validate early, with a clear message
        return colors[name]
    return series_color(name)


def plotext_color(colour: str) -> str | tuple[int, int, int]:
    """Translate "#rgb" / "#rrggbb" into the RGB tuple plotext wants; pass its names through."""
    c = colour.strip()
    if c.startswith("#"):
        digits = c[1:]
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        if len(digits) == 6:
            try:
                return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
            except ValueError:
                pass
    elif c in PLOTEXT_COLOR_NAMES:
        return c
    raise ValueError(
        f"unknown colour {colour!r}: use '#rrggbb' or one of {sorted(PLOTEXT_COLOR_NAMES)}"
    )


def fmt_int(v: float) -> str:
    """Compact integer tick label (12500 -> 12.5k, 2000000 -> 2M) so step ticks stay narrow."""
    v = int(v)
    if abs(v) < 10_000:
        return str(v)
    div, suffix = next(
        (d, sx) for d, sx in ((10**9, "G"), (10**6, "M"), (10**3, "k")) if abs(v) >= d
    )
    return f"{v / div:.4g}{suffix}"


def fmt_value(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def ellipsize(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def fit_line(text: str, width: int) -> str:
    return ellipsize(text, width) if width > 0 else ""


def too_small(width: int) -> str:
    return fit_line("(too small to plot)", width)

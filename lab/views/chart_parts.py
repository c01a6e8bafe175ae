"""The drawing parts under `lab.views.charts`: fresh plotext figures, ticks, legends, colours
and number formats. Private to the charts; split off so each file holds one thing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotext as plt

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
    rgb = plotext_color(colour)
    line = plot.signal(list(xs), list(ys), marker=plt.marker(style.line, pixel=plt.pixel(rgb)))
    line.lines()
    plot.draw(line)
    if show_points or len(xs) == 1:
        dots = plot.signal(list(xs), list(ys), marker=plt.marker(style.point, pixel=plt.pixel(rgb)))
        plot.draw(dots)


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

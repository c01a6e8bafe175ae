"""Terminal charts shared by the CLI and the TUI, rendered to strings with plotext 6.

Every chart is built on a brand-new private plotext figure and returned as text, so the
callers decide where it goes (stdout, a log file, a Textual widget) and nothing here prints.
plotext keeps a global figure (``plotext.figure``) and a global terminal whose size clamps
that figure; using a fresh figure per call means no series, titles, limits or sizes can leak
from one chart into the next, and a chart wider than the real terminal is still honoured.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import plotext as plt

__all__ = [
    "PALETTE",
    "bar_chart",
    "downsample",
    "epoch_chart",
    "overlay_chart",
    "series_color",
    "step_chart",
]

_T = TypeVar("_T")

# Eleven hues readable on dark and light terminals. The count is prime on purpose: with the
# polynomial hash in ``_stable_index`` two names that differ in a single character (by fewer
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

# The colour names plotext 6 understands besides "#rrggbb" (kept here because plotext only
# lists them in a private module).
_PLOTEXT_COLOR_NAMES = frozenset(
    {
        "black", "white", "gray", "gray+", "red", "red+", "green", "green+",
        "orange", "orange+", "blue", "blue+", "magenta", "magenta+", "cyan", "cyan+",
    }
)  # fmt: skip

# Below this size plotext still draws but the result is unreadable; a short note is more honest.
_MIN_WIDTH = 16
_MIN_HEIGHT = 4
# An axis label costs a whole row; on short charts the data needs it more.
_AXIS_LABEL_MIN_HEIGHT = 10

# plotext's C kernel and its Python wrappers are not documented as thread-safe, and the TUI
# may render from worker threads, so one chart is built at a time.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Style:
    """How one series is drawn, so series stay distinguishable without colour (logs)."""

    line: str  # plotext marker code used for the connecting line
    glyph: str  # what the legend row shows for that line
    point: str  # marker stamped on each data point when there is room for it


_STYLES: tuple[_Style, ...] = (
    _Style("hd", "▚", "•"),
    _Style("braille", "⢕", "×"),
    _Style("·", "·", "+"),
    _Style("x", "x", "x"),
    _Style("+", "+", "+"),
    _Style("o", "o", "o"),
)


# --------------------------------------------------------------------------- public helpers


def series_color(name: str) -> str:
    """Colour ("#rrggbb") for a run name, identical in every process and every chart.

    Python's ``hash()`` is salted per process, so a tiny fixed polynomial hash is used
    instead; the CLI, the TUI and a later session all agree on a run's colour.
    """
    return PALETTE[_stable_index(name, len(PALETTE))]


def downsample(items: Sequence[_T], max_points: int) -> list[_T]:
    """Pick at most ``max_points`` evenly spaced items, always keeping the first and the last.

    The last point is the most recent loss, the one a person watching a run cares about, so
    it must survive thinning; a 10k-step run would otherwise cost far more to draw than the
    terminal has cells to show.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    n = len(items)
    if n <= max_points:
        return list(items)
    if max_points == 1:
        return [items[-1]]
    span, slots = n - 1, max_points - 1
    # Exact integer arithmetic: index 0 and n - 1 are both hit and indices strictly increase.
    return [items[(i * span) // slots] for i in range(max_points)]


# --------------------------------------------------------------------------- charts


def epoch_chart(
    epochs: list[dict], *, width: int = 100, height: int = 20, color: bool = True
) -> str:
    """Loss and accuracy per epoch, side by side, for a run's ``epoch`` events.

    Accuracy is shown in percent because that is how runs are compared in the lab reports.
    """
    rows = _last_per_epoch(epochs)
    if not rows:
        return _fit_line("no epochs yet", width)
    if width < _MIN_WIDTH * 2 or height < _MIN_HEIGHT:
        return _too_small(width)

    xs = [float(e) for e in sorted(rows)]
    panels = (
        ("loss", (("train", "train_loss"), ("val", "val_loss")), 1.0),
        ("accuracy (%)", (("train", "train_acc"), ("val", "val_acc")), 100.0),
    )
    colours = {"train": PALETTE[0], "val": PALETTE[1]}
    styles = {"train": _STYLES[0], "val": _STYLES[1]}

    # (panel, name) -> points; a run without validation simply has no "val" line or legend.
    data: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for col, (_, series, scale) in enumerate(panels, start=1):
        for name, key in series:
            pts = [(x, v * scale) for x in xs if (v := _num(rows[int(x)].get(key))) is not None]
            if pts:
                data[col, name] = pts
    present = [n for n in ("train", "val") if any(name == n for _, name in data)]

    panel_width = width // 2
    show_points = len(xs) <= _point_budget(panel_width)
    with _LOCK:
        legend = [(styles[n], colours[n], n) for n in present]
        plot_height, legend_rows = _split_height(
            height, _legend_rows(legend, width, color, show_points)
        )
        fig = _new_figure(width, plot_height)
        fig.subplots(1, 2)
        fig.theme("simple")  # after subplots(): the theme only reaches panels that exist
        for col, (title, series, _) in enumerate(panels, start=1):
            panel = fig.subplot(1, col)
            panel.title(title)
            if plot_height >= _AXIS_LABEL_MIN_HEIGHT:
                panel.label("epoch", axis="x")
            all_ys: list[float] = []
            for name, _key in series:
                pts = data.get((col, name))
                if pts:
                    px, py = zip(*pts, strict=True)
                    _draw_series(panel, px, py, styles[name], colours[name], show_points)
                    all_ys.extend(py)
            _set_x_ticks(panel, xs, panel_width)
            _pad_degenerate_y(panel, all_ys)
        text = _render(fig, color)
    return _join(text, legend_rows)


def step_chart(
    steps: list[dict],
    *,
    width: int = 100,
    height: int = 12,
    color: bool = True,
    max_points: int = 2000,
) -> str:
    """Training loss per global step, thinned to ``max_points`` so long runs stay cheap."""
    pts = sorted(
        (
            (x, v)
            for s in steps
            if s.get("event", "step") == "step"
            and (x := _num(s.get("step"))) is not None
            and (v := _num(s.get("loss"))) is not None
        ),
        key=lambda p: p[0],
    )
    if not pts:
        return _fit_line("no steps yet", width)
    if width < _MIN_WIDTH or height < _MIN_HEIGHT:
        return _too_small(width)
    pts = downsample(pts, max_points)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]

    with _LOCK:
        fig = _new_figure(width, height)
        fig.theme("simple")
        fig.title("train loss per step")
        if height >= _AXIS_LABEL_MIN_HEIGHT:
            fig.label("step", axis="x")
        _draw_series(fig, xs, ys, _STYLES[0], PALETTE[0], show_points=len(xs) == 1)
        _set_x_ticks(fig, xs, width)
        _pad_degenerate_y(fig, ys)
        return _render(fig, color)


def overlay_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    ylabel: str,
    width: int = 100,
    height: int = 20,
    color: bool = True,
    colors: dict[str, str] | None = None,
    xlabel: str | None = None,
) -> str:
    """Several runs on shared axes, e.g. validation accuracy of Level 1, 2 and 3 per epoch.

    Each name keeps its colour across charts and sessions (``series_color``) unless ``colors``
    says otherwise, so a run is recognisable at a glance wherever it appears.
    """
    cleaned: list[tuple[str, list[tuple[float, float]]]] = []
    for name, points in series.items():
        pts = sorted(
            (
                (x, y)
                for p in points
                if (x := _num(p[0])) is not None and (y := _num(p[1])) is not None
            ),
            key=lambda p: p[0],
        )
        if pts:
            cleaned.append((str(name), pts))
    if not cleaned:
        return _fit_line(f"{title}: no data yet", width)
    if width < _MIN_WIDTH or height < _MIN_HEIGHT:
        return _too_small(width)

    picked = {name: _pick_color(name, colors) for name, _ in cleaned}
    styles = {name: _STYLES[i % len(_STYLES)] for i, (name, _) in enumerate(cleaned)}
    show_points = max(len(p) for _, p in cleaned) <= _point_budget(width)
    all_x = [x for _, pts in cleaned for x, _ in pts]
    all_y = [y for _, pts in cleaned for _, y in pts]
    with _LOCK:
        legend = [(styles[n], picked[n], n) for n, _ in cleaned]
        plot_height, legend_rows = _split_height(
            height, _legend_rows(legend, width, color, show_points)
        )
        fig = _new_figure(width, plot_height)
        fig.theme("simple")
        fig.title(f"{title} [{ylabel}]" if ylabel else title)
        if xlabel and plot_height >= _AXIS_LABEL_MIN_HEIGHT:
            fig.label(xlabel, axis="x")
        for name, pts in cleaned:
            px, py = zip(*pts, strict=True)
            _draw_series(fig, px, py, styles[name], picked[name], show_points)
        if all(float(x).is_integer() for x in all_x):
            _set_x_ticks(fig, all_x, width)
        elif max(all_x) == min(all_x):
            fig.ruler("x").lim(all_x[0] - 1, all_x[0] + 1)
        _pad_degenerate_y(fig, all_y)
        text = _render(fig, color)
    return _join(text, legend_rows)


def bar_chart(
    labels: list[str],
    values: list[float],
    *,
    title: str,
    width: int = 60,
    height: int = 12,
    color: bool = True,
) -> str:
    """Horizontal bars, first label on top, each tick reading "label value".

    The value is written in the tick label rather than inside the bar because plotext 6
    paints bar labels in the bar's own colour, which makes them invisible.
    """
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels but {len(values)} values")
    pairs = [
        (str(label), v)
        for label, raw in zip(labels, values, strict=True)
        if (v := _num(raw)) is not None
    ]
    if not pairs:
        return _fit_line(f"{title}: no data", width)
    if width < _MIN_WIDTH or height < _MIN_HEIGHT:
        return _too_small(width)

    n = len(pairs)
    vals = [v for _, v in pairs]
    texts = [_fmt_value(v) for v in vals]
    # Keep at least half the width for the bars themselves.
    room = max(4, width // 2 - 3)
    ticks = [
        _ellipsize(label, max(1, room - len(t) - 1)) + " " + t
        for (label, _), t in zip(pairs, texts, strict=True)
    ]
    positions = [float(n - i) for i in range(n)]  # first label on top
    lower = min(0.0, *vals)
    upper = max(0.0, *vals)
    if upper == lower:
        upper = lower + 1.0

    with _LOCK:
        fig = _new_figure(width, height)
        fig.theme("simple")
        fig.title(title)
        markers = [
            plt.marker("hd", pixel=plt.pixel(_plotext_color(series_color(label))))
            for label, _ in pairs
        ]
        bars = fig.bar(positions, vals, orientation="h", marker=markers, width=0.6)
        fig.draw(bars)
        # Explicit limits: plotext's automatic value-axis limit can clip the longest bar.
        fig.ruler("y").ticks(positions, ticks)
        fig.ruler("y").lim(0.5, n + 0.5)
        fig.ruler("x").lim(lower, upper)
        canvas_width = width - max(len(t) for t in ticks) - 2
        label_width = max(len(_fmt_value(lower)), len(_fmt_value(upper))) + 3
        value_ticks = _nice_ticks(lower, upper, max(2, canvas_width // label_width))
        fig.ruler("x").ticks(value_ticks, [_fmt_tick(t, value_ticks) for t in value_ticks])
        return _render(fig, color)


# --------------------------------------------------------------------------- internals


def _stable_index(name: str, modulus: int) -> int:
    """Polynomial string hash modulo ``modulus``; same answer in every Python process."""
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) % modulus
    return h


def _new_figure(width: int, height: int) -> Any:
    """A private plotext figure of exactly ``width`` x ``height`` cells.

    A new plotext terminal object owns its own master figure; switching its size limits off
    stops plotext from shrinking the chart to the size of whatever terminal (or pipe) the
    process happens to run in.
    """
    if not (hasattr(plt, "terminal") and hasattr(plt, "figure")):
        found = getattr(plt, "__version__", "?")
        raise RuntimeError(f"lab.plots needs plotext >= 6.1 (figure/terminal API), found {found}")
    terminal = type(plt.terminal)()
    terminal.limit(False, False)
    fig = terminal._master
    fig.plot_size(width, height)
    return fig


def _render(fig: Any, color: bool) -> str:
    """Build the figure matrix into text; colourless text also loses trailing blanks."""
    text = fig.build().string(colorless=not color)
    if not color:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text.rstrip("\n")


def _draw_series(
    plot: Any,
    xs: Sequence[float],
    ys: Sequence[float],
    style: _Style,
    colour: str,
    show_points: bool,
) -> None:
    """One connected line, plus a marker per point when they are few enough to read."""
    rgb = _plotext_color(colour)
    line = plot.signal(list(xs), list(ys), marker=plt.marker(style.line, pixel=plt.pixel(rgb)))
    line.lines()
    plot.draw(line)
    if show_points or len(xs) == 1:
        dots = plot.signal(list(xs), list(ys), marker=plt.marker(style.point, pixel=plt.pixel(rgb)))
        plot.draw(dots)


def _point_budget(panel_width: int) -> int:
    """How many per-point markers fit in a panel before they merge into a smear."""
    return max(1, (panel_width - 8) // 3)


def _set_x_ticks(plot: Any, xs: Sequence[float], panel_width: int) -> None:
    """Integer ticks (epochs, steps) spaced so their labels never collide."""
    lo, hi = math.floor(min(xs)), math.ceil(max(xs))
    if lo == hi:
        plot.ruler("x").lim(lo - 1, hi + 1)
        plot.ruler("x").ticks([lo], [_fmt_int(lo)])
        return
    label_width = max(len(_fmt_int(lo)), len(_fmt_int(hi))) + 2
    max_ticks = max(2, (panel_width - 8) // label_width)
    positions = _nice_ticks(lo, hi, max_ticks, integer=True)
    plot.ruler("x").ticks(positions, [_fmt_int(p) for p in positions])


def _nice_ticks(lo: float, hi: float, max_ticks: int, *, integer: bool = False) -> list[float]:
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


def _fmt_tick(v: float, ticks: Sequence[float]) -> str:
    """Tick label with just the decimals the tick spacing needs."""
    if all(float(t).is_integer() for t in ticks):
        return _fmt_int(v)
    step = min((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=abs(v) or 1.0)
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{v:.{decimals}f}"


def _pad_degenerate_y(plot: Any, ys: Sequence[float]) -> None:
    """Give a flat series some vertical room; plotext alone centres it on odd ±1 limits."""
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    if hi - lo > 1e-9 * max(1.0, abs(hi)):
        return
    pad = max(abs(hi) * 0.05, 1e-3)
    plot.ruler("y").lim(lo - pad, hi + pad)


def _legend_rows(
    entries: Iterable[tuple[_Style, str, str]], width: int, color: bool, show_points: bool
) -> list[str]:
    """Legend as text rows under the chart, wrapped to ``width``.

    plotext's in-canvas legend box covers the data in the top-left corner and overflows
    small panels, so the legend lives outside the canvas instead.
    """
    items: list[tuple[str, int]] = []  # (rendered text, visible width)
    for style, colour, label in entries:
        sample = f"{style.glyph}{style.point}{style.glyph}" if show_points else style.glyph * 2
        label = _ellipsize(label, max(1, width - len(sample) - 1))
        shown = sample
        if color:
            shown = plt.colorize(sample, plt.pixel(_plotext_color(colour))).string()
        items.append((f"{shown} {label}", len(sample) + 1 + len(label)))

    rows: list[str] = []
    current, current_width = "", 0
    for text, w in items:
        if current and current_width + 3 + w > width:
            rows.append(_center(current, current_width, width))
            current, current_width = "", 0
        if current:
            current, current_width = current + "   " + text, current_width + 3 + w
        else:
            current, current_width = text, w
    if current:
        rows.append(_center(current, current_width, width))
    return rows


def _center(text: str, visible: int, width: int) -> str:
    return " " * max(0, (width - visible) // 2) + text


def _split_height(height: int, legend_rows: list[str]) -> tuple[int, list[str]]:
    """Share ``height`` between the plot and the legend; the plot keeps at least 4 rows."""
    keep = min(len(legend_rows), max(0, height - _MIN_HEIGHT), max(1, height // 4))
    return height - keep, legend_rows[:keep]


def _join(text: str, extra_rows: list[str]) -> str:
    return "\n".join([text, *extra_rows]) if extra_rows else text


def _last_per_epoch(epochs: Iterable[dict]) -> dict[int, dict]:
    """Epoch number -> record; a resumed run may log an epoch twice and the last one wins."""
    rows: dict[int, dict] = {}
    for record in epochs:
        if record.get("event", "epoch") != "epoch":
            continue
        e = _num(record.get("epoch"))
        if e is not None:
            rows[int(e)] = record
    return rows


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN / inf values (diverged runs)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _pick_color(name: str, colors: Mapping[str, str] | None) -> str:
    if colors and name in colors:
        _plotext_color(colors[name])  # validate early, with a clear message
        return colors[name]
    return series_color(name)


def _plotext_color(colour: str) -> str | tuple[int, int, int]:
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
    elif c in _PLOTEXT_COLOR_NAMES:
        return c
    raise ValueError(
        f"unknown colour {colour!r}: use '#rrggbb' or one of {sorted(_PLOTEXT_COLOR_NAMES)}"
    )


def _fmt_int(v: float) -> str:
    """Compact integer tick label (12500 -> 12.5k, 2000000 -> 2M) so step ticks stay narrow."""
    v = int(v)
    if abs(v) < 10_000:
        return str(v)
    div, suffix = next(
        (d, sx) for d, sx in ((10**9, "G"), (10**6, "M"), (10**3, "k")) if abs(v) >= d
    )
    return f"{v / div:.4g}{suffix}"


def _fmt_value(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _ellipsize(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _fit_line(text: str, width: int) -> str:
    return _ellipsize(text, width) if width > 0 else ""


def _too_small(width: int) -> str:
    return _fit_line("(too small to plot)", width)

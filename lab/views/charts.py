"""Terminal charts shared by the CLI and the TUI, rendered to strings with plotext 6.

Every chart is built on a brand-new private plotext figure and returned as text, so the
callers decide where it goes (stdout, a log file, a Textual widget) and nothing here prints.
plotext keeps a global figure (``plotext.figure``) and a global terminal whose size clamps
that figure; using a fresh figure per call means no series, titles, limits or sizes can leak
from one chart into the next, and a chart wider than the real terminal is still honoured.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

import plotext as plt

from lab.views import chart_parts as cp
from lab.views.chart_parts import PALETTE, series_color

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



# Below this size plotext still draws but the result is unreadable; a short note is more honest.
# An axis label costs a whole row; on short charts the data needs it more.
_AXIS_LABEL_MIN_HEIGHT = 10

# plotext's C kernel and its Python wrappers are not documented as thread-safe, and the TUI
# may render from worker threads, so one chart is built at a time.
_LOCK = threading.Lock()




_STYLES: tuple[cp.Style, ...] = (
    cp.Style("hd", "▚", "•"),
    cp.Style("braille", "⢕", "×"),
    cp.Style("·", "·", "+"),
    cp.Style("x", "x", "x"),
    cp.Style("+", "+", "+"),
    cp.Style("o", "o", "o"),
)


_BAND_STYLE = cp.Style("·", "·", "·")
BAND_LABEL = "band: min–max of the runs"

# --------------------------------------------------------------------------- public helpers




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
    rows = cp.last_per_epoch(epochs)
    if not rows:
        return cp.fit_line("no epochs yet", width)
    if width < cp.MIN_WIDTH * 2 or height < cp.MIN_HEIGHT:
        return cp.too_small(width)

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
            pts = [(x, v * scale) for x in xs if (v := cp.num(rows[int(x)].get(key))) is not None]
            if pts:
                data[col, name] = pts
    present = [n for n in ("train", "val") if any(name == n for _, name in data)]

    panel_width = width // 2  # plotext's split: the second panel takes the odd column
    show_points = len(xs) <= cp.point_budget(panel_width)
    with _LOCK:
        legend = [(styles[n], colours[n], n) for n in present]
        plot_height, legend_rows = cp.split_height(
            height, cp.legend_rows(legend, width, color, show_points)
        )
        fig = cp.new_figure(width, plot_height)
        fig.subplots(1, 2)
        fig.theme("simple")  # after subplots(): the theme only reaches panels that exist
        rows = cp.plot_rows(plot_height, True, plot_height >= _AXIS_LABEL_MIN_HEIGHT)
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
                    cp.draw_series(panel, px, py, styles[name], colours[name], show_points)
                    all_ys.extend(py)
            cp.set_even_ticks(panel, xs, all_ys, width - panel_width if col == 2 else
                              panel_width, rows)
        text = cp.render(fig, color)
    return cp.join(text, legend_rows)


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
            and (x := cp.num(s.get("step"))) is not None
            and (v := cp.num(s.get("loss"))) is not None
        ),
        key=lambda p: p[0],
    )
    if not pts:
        return cp.fit_line("no steps yet", width)
    if width < cp.MIN_WIDTH or height < cp.MIN_HEIGHT:
        return cp.too_small(width)
    pts = downsample(pts, max_points)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]

    with _LOCK:
        fig = cp.new_figure(width, height)
        fig.theme("simple")
        fig.title("train loss per step")
        if height >= _AXIS_LABEL_MIN_HEIGHT:
            fig.label("step", axis="x")
        cp.draw_series(fig, xs, ys, _STYLES[0], PALETTE[0], show_points=len(xs) == 1)
        rows = cp.plot_rows(height, True, height >= _AXIS_LABEL_MIN_HEIGHT)
        cp.set_even_ticks(fig, xs, ys, width, rows)
        return cp.render(fig, color)


def system_chart(
    samples: list[dict],
    *,
    width: int = 100,
    height: int = 8,
    color: bool = True,
    max_points: int = 2000,
) -> str:
    """A run's system samples (system.jsonl) over its minutes: the process's CPU use and, when
    NVML sampled it, the GPU's utilisation, both in percent; the latest memory in the title."""
    series = []
    for key, name in (("cpu_percent", "CPU %"), ("gpu_util", "GPU %")):
        pts = sorted(((x / 60, v) for s in samples
                      if (x := cp.num(s.get("elapsed"))) is not None
                      and (v := cp.num(s.get(key))) is not None), key=lambda p: p[0])
        if pts:
            series.append((name, downsample(pts, max_points)))
    if not series:
        return cp.fit_line("no system samples", width)
    if width < cp.MIN_WIDTH or height < cp.MIN_HEIGHT:
        return cp.too_small(width)
    last = samples[-1]
    memory = [f"RSS {last['rss'] / 2**30:.1f} GiB"] if cp.num(last.get("rss")) else []
    if cp.num(last.get("gpu_mem")) is not None:
        memory.append(f"GPU mem {last['gpu_mem'] / 2**30:.1f} GiB")
    with _LOCK:
        fig = cp.new_figure(width, height)
        fig.theme("simple")
        hues = ("blue", "orange")  # PALETTE[0], PALETTE[1]
        names = [f"{name} ({hues[i]})" if color else name
                 for i, (name, _) in enumerate(series)]
        fig.title(" · ".join([*names, *memory]))
        if height >= _AXIS_LABEL_MIN_HEIGHT:
            fig.label("minutes", axis="x")
        xs_all, ys_all = [], []
        for i, (_name, pts) in enumerate(series):
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            cp.draw_series(fig, xs, ys, _STYLES[i % len(_STYLES)], PALETTE[i % len(PALETTE)],
                           show_points=len(xs) == 1)
            xs_all += xs
            ys_all += ys
        rows = cp.plot_rows(height, True, height >= _AXIS_LABEL_MIN_HEIGHT)
        cp.set_even_ticks(fig, xs_all, ys_all, width, rows)
        return cp.render(fig, color)


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
    bands: dict[str, list[tuple[float, float, float]]] | None = None,
) -> str:
    """Several runs on shared axes, e.g. validation accuracy of Level 1, 2 and 3 per epoch.

    Each name keeps its colour across charts and sessions (``series_color``) unless ``colors``
    says otherwise, so a run is recognisable at a glance wherever it appears. ``bands`` gives
    a series (a group's mean) a band, (x, low, high) per point: plotext cannot fill between
    two lines, so the band is its two edges and a bar at each point, in a dimmer shade of the
    series' colour, under the series itself.
    """
    bands = bands or {}
    cleaned: list[tuple[str, list[tuple[float, float]]]] = []
    for name, points in series.items():
        pts = sorted(
            (
                (x, y)
                for p in points
                if (x := cp.num(p[0])) is not None and (y := cp.num(p[1])) is not None
            ),
            key=lambda p: p[0],
        )
        if pts:
            cleaned.append((str(name), pts))
    if not cleaned:
        return cp.fit_line(f"{title}: no data yet", width)
    if width < cp.MIN_WIDTH or height < cp.MIN_HEIGHT:
        return cp.too_small(width)

    picked = {name: cp.pick_color(name, colors) for name, _ in cleaned}
    styles = {name: _STYLES[i % len(_STYLES)] for i, (name, _) in enumerate(cleaned)}
    show_points = max(len(p) for _, p in cleaned) <= cp.point_budget(width)
    edges = {name: cp.band_edges(bands[name]) for name, _ in cleaned if bands.get(name)}
    all_x = [x for _, pts in cleaned for x, _ in pts]
    all_y = [y for _, pts in cleaned for _, y in pts] + \
        [y for low, high in edges.values() for _, y in low + high]
    with _LOCK:
        legend = [(styles[n], picked[n], n) for n, _ in cleaned]
        if edges:
            legend.append((_BAND_STYLE, cp.dim_color(picked[next(iter(edges))]), BAND_LABEL))
        plot_height, legend_rows = cp.split_height(
            height, cp.legend_rows(legend, width, color, show_points)
        )
        fig = cp.new_figure(width, plot_height)
        fig.theme("simple")
        fig.title(f"{title} [{ylabel}]" if ylabel else title)
        if xlabel and plot_height >= _AXIS_LABEL_MIN_HEIGHT:
            fig.label(xlabel, axis="x")
        for name, (low, high) in edges.items():
            cp.draw_band(fig, low, high, picked[name])
        for name, pts in cleaned:
            px, py = zip(*pts, strict=True)
            cp.draw_series(fig, px, py, styles[name], picked[name], show_points)
        rows = cp.plot_rows(plot_height, True, bool(xlabel) and
                            plot_height >= _AXIS_LABEL_MIN_HEIGHT)
        cp.set_even_ticks(fig, all_x, all_y, width, rows)
        text = cp.render(fig, color)
    return cp.join(text, legend_rows)


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
        if (v := cp.num(raw)) is not None
    ]
    if not pairs:
        return cp.fit_line(f"{title}: no data", width)
    if width < cp.MIN_WIDTH or height < cp.MIN_HEIGHT:
        return cp.too_small(width)

    n = len(pairs)
    vals = [v for _, v in pairs]
    texts = [cp.fmt_value(v) for v in vals]
    # Keep at least half the width for the bars themselves.
    room = max(4, width // 2 - 3)
    ticks = [
        cp.ellipsize(label, max(1, room - len(t) - 1)) + " " + t
        for (label, _), t in zip(pairs, texts, strict=True)
    ]
    positions = [float(n - i) for i in range(n)]  # first label on top
    lower = min(0.0, *vals)
    upper = max(0.0, *vals)
    if upper == lower:
        upper = lower + 1.0

    with _LOCK:
        fig = cp.new_figure(width, height)
        fig.theme("simple")
        fig.title(title)
        markers = [
            plt.marker("hd", pixel=plt.pixel(cp.plotext_color(series_color(label))))
            for label, _ in pairs
        ]
        bars = fig.bar(positions, vals, orientation="h", marker=markers, width=0.6)
        fig.draw(bars)
        # Explicit limits: plotext's automatic value-axis limit can clip the longest bar.
        fig.ruler("y").ticks(positions, ticks)
        fig.ruler("y").lim(0.5, n + 0.5)
        fig.ruler("x").lim(lower, upper)
        canvas_width = width - max(len(t) for t in ticks) - 2
        label_width = max(len(cp.fmt_value(lower)), len(cp.fmt_value(upper))) + 3
        value_ticks = cp.nice_ticks(lower, upper, max(2, canvas_width // label_width))
        fig.ruler("x").ticks(value_ticks, [cp.fmt_tick(t, value_ticks) for t in value_ticks])
        return cp.render(fig, color)


# --------------------------------------------------------------------------- internals

"""PNG figures for the Markdown report: accuracy bars (with error bars for a study), training
curves (mean with a band for a study), confusion heatmaps.

Figures are built on `matplotlib.figure.Figure` objects directly, never through pyplot: pyplot
keeps every figure in a global registry (a leak unless each one is closed) and is not safe to call
from a worker thread, while a bare Figure is freed like any other object and renders with Agg
without a display. Each `*_figure` function returns the Figure so tests can inspect it; `save`
writes it as PNG. Inputs are the plain lists and dicts of the run records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless everywhere; only pyplot reads it, and we never draw through it

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110
# Colour-blind-safe (Okabe-Ito) cycle; a run keeps its colour across figures by its position.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
          "#000000")
ANNOTATE_MAX = 20  # counts are written into the heatmap cells up to this many classes
LABELS_MAX = 60  # beyond this many classes only every k-th class name fits on an axis


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path`; the Figure holds no global state, so nothing to close."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI, facecolor="white")
    fig.clear()
    return path


def accuracy_bar_figure(labels: Sequence[str], accuracies: Sequence[float | None],
                        references: Sequence[float | None] | None = None,
                        reference_label: str = "study") -> Figure:
    """Test accuracy per run as bars (fractions in, percent drawn), each bar annotated.

    `references` (optional, same length) are drawn as black ticks, e.g. the study's accuracy.
    """
    n = len(labels)
    fig = Figure(figsize=(max(4.5, 1.3 * n + 2.0), 4.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n)
    values = [100 * a if a is not None else 0.0 for a in accuracies]
    bars = ax.bar(x, values, color=[color(i) for i in range(n)], width=0.6)
    for bar, acc in zip(bars, accuracies, strict=True):
        text = f"{100 * acc:.2f}%" if acc is not None else "–"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=9)
    if references is not None and any(r is not None for r in references):
        xs = [i for i, r in enumerate(references) if r is not None]
        ys = [100 * references[i] for i in xs]  # type: ignore[operator]
        ax.scatter(xs, ys, marker="_", s=900, color="black", linewidths=2, zorder=3,
                   label=reference_label)
        fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    ax.set_xticks(x, list(labels))
    ax.set_ylim(0, 108)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy")
    ax.grid(axis="y", alpha=0.3)
    return fig


def study_accuracy_figure(labels: Sequence[str], means: Sequence[float],
                          intervals: Sequence[tuple[float | None, float | None]],
                          runs: Sequence[Sequence[float]]) -> Figure:
    """Mean test accuracy per configuration as bars with their 95% interval as black error bars
    (cut to 0-100%; none where a configuration has one run) and each run as a dot (fractions
    in, percent drawn), so the spread behind every mean is in sight."""
    import textwrap

    n = len(labels)
    names = [textwrap.fill(str(label), 18, break_long_words=False, break_on_hyphens=False)
             for label in labels]  # a sweep's labels run long
    fig = Figure(figsize=(max(4.5, 1.6 * n + 2.0), 4.2 + 0.15 * max(
        [name.count("\n") for name in names] + [0])), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n)
    ax.bar(x, [100 * m for m in means], color=[color(i) for i in range(n)], width=0.6,
           alpha=0.85)
    # an accuracy cannot leave [0, 1]; a few runs' t interval can, and is drawn cut to it
    bounded = {i: (max(0.0, lo), min(1.0, hi)) for i, (lo, hi) in enumerate(intervals)
               if lo is not None and hi is not None}
    if bounded:
        ax.errorbar([x[i] for i in bounded], [100 * means[i] for i in bounded],
                    yerr=[[100 * (means[i] - lo) for i, (lo, _) in bounded.items()],
                          [100 * (hi - means[i]) for i, (_, hi) in bounded.items()]],
                    fmt="none", ecolor="black", elinewidth=2, capsize=8, capthick=2, zorder=3,
                    label="95% interval of the mean")
    top = 100.0
    for i, values in enumerate(runs):
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(x[i] + np.asarray(jitter), [100 * v for v in values], s=14, color="white",
                   edgecolors="black", linewidths=0.8, zorder=4,
                   label="one run" if i == 0 else None)
        peak = 100 * max([bounded.get(i, (0.0, means[i]))[1], means[i], *values])
        ax.annotate(f"{100 * means[i]:.2f}%", (x[i], peak), xytext=(0, 4),
                    textcoords="offset points", ha="center", va="bottom", fontsize=9)
        top = max(top, peak)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, top + 8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per configuration")
    ax.grid(axis="y", alpha=0.3)
    if n:
        fig.legend(loc="outside lower center", fontsize=8, frameon=False, ncols=2)
    return fig


def band_curves_figure(series: Mapping[str, Sequence[dict[str, Any]]],
                       ylabel: str = "validation accuracy (%)") -> Figure:
    """Per configuration the mean curve over its runs with a min-max band (the rows of
    `lab.views.bands.epoch_bands`: epoch, mean, min, max; fractions in, percent drawn)."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    max_epoch = 1
    for i, (label, bands) in enumerate(series.items()):
        if not bands:
            continue
        xs = [b["epoch"] for b in bands]
        ax.fill_between(xs, [100 * b["min"] for b in bands], [100 * b["max"] for b in bands],
                        color=color(i), alpha=0.25, linewidth=0)
        ax.plot(xs, [100 * b["mean"] for b in bands], "o-", color=color(i), markersize=4,
                label=f"{label} (n={max(b['n'] for b in bands)})")
        max_epoch = max(max_epoch, max(xs))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("Mean over runs, band: min to max")
    ax.set_xlim(0.5, max_epoch + 0.5)
    _integer_epochs(ax, max_epoch)
    ax.grid(alpha=0.3)
    if any(series.values()):
        ax.legend(fontsize=8, loc="lower right")
    return fig


def val_curves_figure(series: Mapping[str, Sequence[dict[str, Any]]]) -> Figure:
    """Validation accuracy per epoch of every run on shared axes, like the study's curves."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    max_epoch = 1
    for i, (label, epochs) in enumerate(series.items()):
        xs, ys = _xy(epochs, "val_acc")
        if xs:
            ax.plot(xs, [100 * y for y in ys], "o-", color=color(i), label=label, markersize=4)
            max_epoch = max(max_epoch, max(xs))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy")
    ax.set_xlim(0.5, max_epoch + 0.5)
    _integer_epochs(ax, max_epoch)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def run_curves_figure(epochs: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """One run's loss and accuracy per epoch, training against validation, side by side."""
    fig = Figure(figsize=(9.0, 3.6), dpi=DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    max_epoch = max([int(e.get("epoch", 0)) for e in epochs] + [1])
    for ax, key, scale, name in ((loss_ax, "loss", 1.0, "loss"),
                                 (acc_ax, "acc", 100.0, "accuracy (%)")):
        for split, style, c in (("train", "o-", color(0)), ("val", "s--", color(1))):
            xs, ys = _xy(epochs, f"{split}_{key}")
            if xs:
                ax.plot(xs, [scale * y for y in ys], style, color=c, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_xlim(0.5, max_epoch + 0.5)
        _integer_epochs(ax, max_epoch)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    loss_ax.set_title("Loss")
    acc_ax.set_title("Accuracy")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                     title: str = "Confusion matrix") -> Figure:
    """Rows are true classes, columns predictions; colour is the share of the true class (so
    classes of different size compare), and the cells carry the counts up to 20 classes."""
    cm = np.asarray(confusion, dtype=np.int64)
    n = len(classes)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {n} classes")
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = float(np.clip(0.42 * n + 2.5 if n <= 20 else 0.22 * n + 6.5, 4.5, 28.0))
    fig = Figure(figsize=(side + 1.2, side), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="share of true class")
    step = max(1, math.ceil(n / LABELS_MAX))
    ticks = list(range(0, n, step))
    size = 9 if n <= 20 else 7 if n <= 40 else 6
    names = [str(classes[i]) for i in ticks]
    slanted = sum(len(name) for name in names) > 3 * len(names) + 8  # long names would overlap
    ax.set_xticks(ticks, names, rotation=45 if slanted else 0,
                  ha="right" if slanted else "center", fontsize=size)
    ax.set_yticks(ticks, names, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size - 1,
                        color="white" if share[i, j] > 0.5 else "black")
    return fig


def _xy(epochs: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = sorted((int(e["epoch"]), float(e[key])) for e in epochs
                   if e.get("epoch") is not None and isinstance(e.get(key), (int, float)))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _integer_epochs(ax: Any, max_epoch: int) -> None:
    """Whole epochs on the x axis (a one-epoch run would otherwise get ticks at 0.6, 1.2)."""
    from matplotlib.ticker import MaxNLocator

    if max_epoch <= 20:
        ax.set_xticks(range(1, max_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

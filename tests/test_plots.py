"""Charts render to bounded, deterministic text and never share plotext state between calls."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time

import plotext as plt
import pytest

from lab.views import charts as plots

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _epochs(n: int, *, val_shift: float = 0.0) -> list[dict]:
    return [
        {
            "event": "epoch",
            "epoch": e,
            "step": 625 * e,
            "train_loss": 1.5 * 0.8**e,
            "train_acc": 1 - 0.6 * 0.8**e,
            "val_loss": 1.4 * 0.85**e + 0.1,
            "val_acc": 0.95 - 0.6 * 0.85**e + val_shift * e,
            "seconds": 41.2,
            "images_per_s": 970.0,
        }
        for e in range(1, n + 1)
    ]


def _steps(n: int) -> list[dict]:
    return [
        {"event": "step", "epoch": 1 + i // 625, "step": i, "loss": 2.3 * math.exp(-i / 3000)}
        for i in range(1, n + 1)
    ]


LEVELS = {
    "Level 1": [(1, 0.40), (2, 0.52), (3, 0.58), (4, 0.61)],
    "Level 2": [(1, 0.45), (2, 0.60), (3, 0.68), (4, 0.71)],
    "Level 3": [(1, 0.50), (2, 0.70), (3, 0.80), (4, 0.85)],
}


def _visible_lines(text: str) -> list[str]:
    return ANSI.sub("", text).split("\n")


def _assert_fits(text: str, width: int, height: int) -> None:
    lines = _visible_lines(text)
    assert max(len(line) for line in lines) <= width, [len(line) for line in lines]
    assert len(lines) <= height


# --------------------------------------------------------------------------- epoch_chart


def test_epoch_chart_has_both_panels_legend_and_fits() -> None:
    out = plots.epoch_chart(_epochs(5), width=100, height=20, color=False)
    assert "loss" in out and "accuracy" in out and "epoch" in out
    assert "train" in out and "val" in out
    assert not ANSI.search(out)
    _assert_fits(out, 100, 20)
    # Integer epoch ticks, not 1.0 / 1.7 / 2.3 ...
    tick_row = next(line for line in out.split("\n") if re.fullmatch(r"[\s\d]+", line))
    assert tick_row.split() == ["1", "2", "3", "4", "5"] * 2  # one axis per panel


def test_epoch_chart_color_adds_ansi_but_keeps_width() -> None:
    out = plots.epoch_chart(_epochs(5), width=80, height=16, color=True)
    assert ANSI.search(out)
    _assert_fits(out, 80, 16)
    assert ANSI.sub("", out).replace(" ", "") != ""


def test_charts_use_the_requested_size_not_the_terminal_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # plotext clamps its figure to the terminal by default; a TUI panel may be wider.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    for out in (
        plots.epoch_chart(_epochs(5), width=130, height=34, color=True),
        plots.overlay_chart(LEVELS, title="t", ylabel="y", width=130, height=34, color=True),
    ):
        lines = _visible_lines(out)
        assert max(len(line) for line in lines) == 130
        assert len(lines) == 34


def test_epoch_chart_reflects_the_data() -> None:
    base = plots.epoch_chart(_epochs(5), color=False)
    assert plots.epoch_chart(_epochs(5), color=False) == base  # deterministic
    changed = plots.epoch_chart(_epochs(5, val_shift=0.03), color=False)
    assert changed != base


def test_epoch_chart_empty_and_single_epoch() -> None:
    assert plots.epoch_chart([], width=100) == "no epochs yet"
    one = plots.epoch_chart(_epochs(1), width=100, height=20, color=False)
    _assert_fits(one, 100, 20)
    # One point per series has no line to draw: per-point markers must show it on the canvas.
    canvas = "\n".join(line for line in one.split("\n") if "│" in line)
    assert "•" in canvas and "×" in canvas
    assert "train" in one and "val" in one


def test_epoch_chart_keeps_the_last_record_of_a_repeated_epoch() -> None:
    # A resumed run logs the interrupted epoch again; the later record is the real one.
    rows = _epochs(4)
    stale = {**rows[2], "val_acc": 0.05, "val_loss": 9.0}
    resumed = [*rows[:2], stale, *rows[2:]]
    assert plots.epoch_chart(resumed, color=False) == plots.epoch_chart(rows, color=False)


def test_epoch_chart_without_validation_has_no_val_legend() -> None:
    rows = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + e / 20} for e in (1, 2, 3)]
    out = plots.epoch_chart(rows, color=False)
    assert "train" in out and "val" not in out


def test_epoch_chart_skips_non_finite_values() -> None:
    rows = _epochs(4)
    rows[2]["val_loss"] = float("nan")
    rows[3]["train_loss"] = float("inf")
    out = plots.epoch_chart(rows, color=False)
    assert "nan" not in out and "inf" not in out


# --------------------------------------------------------------------------- small terminals


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize(
    "render",
    [
        lambda w, h, c: plots.epoch_chart(_epochs(7), width=w, height=h, color=c),
        lambda w, h, c: plots.epoch_chart(_epochs(1), width=w, height=h, color=c),
        lambda w, h, c: plots.step_chart(_steps(300), width=w, height=h, color=c),
        lambda w, h, c: plots.overlay_chart(
            LEVELS, title="val acc", ylabel="%", width=w, height=h, color=c
        ),
        lambda w, h, c: plots.bar_chart(
            ["Level 1", "Level 2", "a rather long run name"],
            [61.0, 71.5, 85.2],
            title="test accuracy (%)",
            width=w,
            height=h,
            color=c,
        ),
    ],
    ids=["epoch", "one-epoch", "step", "overlay", "bar"],
)
@pytest.mark.parametrize("size", [(40, 8), (24, 6), (10, 3)])
def test_small_sizes_do_not_raise_and_fit(render, size: tuple[int, int], color: bool) -> None:
    width, height = size
    out = render(width, height, color)
    _assert_fits(out, width, height)
    if not color:
        assert not ANSI.search(out)


# --------------------------------------------------------------------------- step_chart


def test_downsample_keeps_first_and_last_evenly() -> None:
    items = list(range(10_000))
    kept = plots.downsample(items, 2000)
    assert len(kept) == 2000
    assert kept[0] == 0 and kept[-1] == 9_999
    assert all(b > a for a, b in zip(kept, kept[1:], strict=False))
    gaps = {b - a for a, b in zip(kept, kept[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 1  # even spacing


def test_downsample_edge_cases() -> None:
    assert plots.downsample([1, 2, 3], 5) == [1, 2, 3]
    assert plots.downsample([1, 2, 3], 3) == [1, 2, 3]
    assert plots.downsample([1, 2, 3, 4], 2) == [1, 4]
    assert plots.downsample([1, 2, 3, 4], 1) == [4]
    assert plots.downsample([], 3) == []
    with pytest.raises(ValueError):
        plots.downsample([1, 2], 0)


def test_step_chart_ten_thousand_steps_is_fast_and_reaches_the_last_step() -> None:
    steps = _steps(10_000)
    start = time.perf_counter()
    out = plots.step_chart(steps, width=100, height=12, color=False)
    assert time.perf_counter() - start < 2.0
    _assert_fits(out, 100, 12)
    assert "step" in out and "loss" in out
    # The x range only reaches the final tick when the last step survived downsampling.
    assert "10k" in out
    assert plots.downsample(steps, 2000)[-1]["step"] == 10_000


def test_step_chart_empty_and_other_events_ignored() -> None:
    assert plots.step_chart([]) == "no steps yet"
    assert plots.step_chart(_epochs(3)) == "no steps yet"


# --------------------------------------------------------------------------- overlay_chart


def test_overlay_chart_lists_every_series() -> None:
    out = plots.overlay_chart(LEVELS, title="validation accuracy", ylabel="acc", color=False)
    for name in LEVELS:
        assert name in out
    assert "validation accuracy" in out
    assert not ANSI.search(out)
    _assert_fits(out, 100, 20)


def test_overlay_chart_uses_stable_or_given_colours() -> None:
    out = plots.overlay_chart({"a": [(1, 1.0), (2, 2.0)]}, title="t", ylabel="y", color=True)
    r, g, b = (int(plots.series_color("a")[i : i + 2], 16) for i in (1, 3, 5))
    assert f"\x1b[38;2;{r};{g};{b}m" in out

    out = plots.overlay_chart(
        {"a": [(1, 1.0), (2, 2.0)]}, title="t", ylabel="y", colors={"a": "#ff0000"}
    )
    assert "\x1b[38;2;255;0;0m" in out
    with pytest.raises(ValueError):
        plots.overlay_chart({"a": [(1, 1.0)]}, title="t", ylabel="y", colors={"a": "reddish"})


def test_overlay_chart_empty() -> None:
    assert "no data" in plots.overlay_chart({}, title="val acc", ylabel="%")
    assert "no data" in plots.overlay_chart({"a": []}, title="val acc", ylabel="%")


def test_series_color_is_stable_within_a_process() -> None:
    first = [plots.series_color(name) for name in LEVELS]
    plots.epoch_chart(_epochs(3))
    assert [plots.series_color(name) for name in LEVELS] == first
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in first)
    assert all(c in plots.PALETTE for c in first)


def test_series_color_differs_for_a_small_set_of_names() -> None:
    names = ["Level 1", "Level 2", "Level 3", "run-1", "run-2", "run-3"]
    for group in (names[:3], names[3:]):
        colours = [plots.series_color(n) for n in group]
        assert len(set(colours)) == len(colours), dict(zip(group, colours, strict=True))


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_series_color_is_stable_across_processes(seed: str) -> None:
    code = ("from lab.views.charts import series_color as c; "
            "print(c('Level 1'), c('Level 2'), c('x y'))")
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    here = " ".join(plots.series_color(n) for n in ("Level 1", "Level 2", "x y"))
    assert done.stdout.strip() == here


# --------------------------------------------------------------------------- bar_chart


def test_bar_chart_reads_top_to_bottom_with_values() -> None:
    labels, values = ["Level 1", "Level 2", "Level 3"], [61.04, 71.5, 85.25]
    out = plots.bar_chart(labels, values, title="test accuracy (%)", color=False)
    assert "test accuracy (%)" in out
    rows = [line for line in out.split("\n") if "Level" in line]
    ticks = [r.split("┤")[0].strip() for r in rows]
    assert ticks == ["Level 1 61.0", "Level 2 71.5", "Level 3 85.2"]
    _assert_fits(out, 60, 12)


def test_bar_chart_rejects_mismatched_inputs_and_handles_empty() -> None:
    with pytest.raises(ValueError):
        plots.bar_chart(["a", "b"], [1.0], title="t")
    assert "no data" in plots.bar_chart([], [], title="t")


# --------------------------------------------------------------------------- state


def test_no_series_leak_from_one_chart_into_the_next() -> None:
    args = {"title": "validation accuracy", "ylabel": "%", "color": False}
    fresh = plots.overlay_chart({"Level 1": LEVELS["Level 1"]}, **args)
    plots.epoch_chart(_epochs(5), color=False)
    after = plots.overlay_chart({"Level 1": LEVELS["Level 1"]}, **args)
    assert after == fresh
    assert "train" not in after and "val " not in after and "loss" not in after


def test_global_plotext_figure_is_neither_used_nor_changed() -> None:
    fig = plt.figure
    fig.clear()
    try:
        fig.title("GLOBAL-MARKER")
        fig.draw(fig.signal([1, 2, 3], [3, 1, 2]))
        before = fig.build().string(colorless=True)
        out = plots.epoch_chart(_epochs(3), color=False)
        out += plots.overlay_chart(LEVELS, title="t", ylabel="y", color=False)
        assert "GLOBAL-MARKER" not in out
        assert fig.build().string(colorless=True) == before
    finally:
        fig.clear()


def test_charts_never_print(capsys: pytest.CaptureFixture[str]) -> None:
    plots.epoch_chart(_epochs(3))
    plots.step_chart(_steps(50))
    plots.overlay_chart(LEVELS, title="t", ylabel="y")
    plots.bar_chart(["a"], [1.0], title="t")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_system_chart_draws_cpu_and_gpu_percent_and_names_the_memory() -> None:
    from lab.views.charts import system_chart

    assert "no system samples" in system_chart([], width=60, height=8)
    cpu_only = [{"elapsed": 5.0 * i, "cpu_percent": 50.0 + i, "rss": 3 * 2**30} for i in range(12)]
    text = system_chart(cpu_only, width=70, height=9, color=False)
    assert "CPU %" in text and "GPU %" not in text and "RSS 3.0 GiB" in text
    with_gpu = [{**s, "gpu_util": 90.0, "gpu_mem": 31 * 2**30} for s in cpu_only]
    text = system_chart(with_gpu, width=70, height=9, color=False)
    assert "GPU %" in text and "GPU mem 31.0 GiB" in text
    assert len(text.splitlines()) <= 9 and max(len(x) for x in text.splitlines()) <= 70

"""`lab report --study`: the study's table, error bars, banded curves, best Grad-CAM grids and
observations, from synthetic runs whose numbers the test knows; PNGs decoded and looked at."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from scipy.stats import t as student_t

from lab.errors import ConfigError, NotFoundError
from lab.views import figures
from lab.views.report import write_report
from tests.observation_runs import study_run, write_gallery
from tests.test_observations import HOLDS, SUPPORT, gap_of
from tests.tui_runs import write_run

LINK_RE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def shifted(correct: dict[str, int], by: int) -> dict[str, int]:
    return {c: max(0, min(SUPPORT, k + by)) for c, k in correct.items()}


def accuracy(correct: dict[str, int]) -> float:
    return sum(correct.values()) / (len(correct) * SUPPORT)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Level 3 at two learning rates, three seeds each, and one run at a third; the best run
    of the first configuration has a gallery, the others none."""
    runs = tmp_path_factory.mktemp("study") / "runs"
    configs = {"a": (3e-3, [shifted(c, 0) for c in HOLDS]),
               "b": (1e-3, [shifted(c, -4) for c in HOLDS]),
               "c": (1e-2, [shifted(HOLDS[0], 2)])}
    ids: dict[str, list[str]] = {}
    k = 0
    for name, (lr, results) in configs.items():
        for seed, correct in enumerate(results):
            run_id = f"202503{k + 1:02d}-100000-l3-{k:04x}"
            study_run(runs, run_id, 3, seed, correct, SUPPORT, config={"lr": lr})
            ids.setdefault(name, []).append(run_id)
            k += 1
    best_a = ids["a"][max(range(3), key=lambda i: accuracy(configs["a"][1][i]))]
    from lab.runs import RunDir

    write_gallery(RunDir(runs / best_a), [(50, 10), (40, 20)], [(10, 50), (20, 40)])
    write_run(runs, "20250320-100000-l3-0bad", 3, corrupt="result", config={"study": "s1"})
    out = runs.parent / "report"
    written = write_report(runs, out_dir=out, study="s1")
    return {"runs": runs, "ids": ids, "configs": configs, "best_a": best_a, "out": out,
            "written": written, "md": (out / "report.md").read_text()}


def sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## ", md, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


@pytest.mark.slow  # renders a whole report
def test_the_report_has_its_sections_and_every_link_is_a_real_png(study: dict) -> None:
    md, out = study["md"], study["out"]
    assert md.startswith("# Study `s1`: cifar10")
    left_out = [line for line in md.splitlines() if line.startswith("- Left out:")]
    assert len(left_out) == 1 and "20250320-100000-l3-0bad" in left_out[0]
    assert "20250320-100000-l3-0bad" not in study["written"]["runs"]
    assert list(sections(md)) == ["Configurations", "Validation curves",
                                  "Grad-CAM of each configuration's best run", "Observations"]
    links = LINK_RE.findall(md)
    assert "figures/study-accuracy.png" in links and "figures/study-val-accuracy.png" in links
    for link in links:
        with Image.open(out / link) as img:
            img.verify()
        with Image.open(out / link) as img:
            assert np.asarray(img.convert("RGB")).std() > 5, link
    assert sorted(str(out / f) for f in (out / "figures").iterdir()) == \
        sorted(study["written"]["figures"])
    assert study["written"]["study"] == "s1"
    assert json.loads((out / ".lab-report").read_text())["study"] == "s1"


@pytest.mark.slow  # renders a whole report
def test_the_table_is_the_study_s_numbers(study: dict) -> None:
    table = sections(study["md"])["Configurations"]
    rows = [line for line in table.splitlines() if line.startswith("| L3")]
    assert len(rows) == 3
    base = [accuracy(c) for c in study["configs"]["a"][1]]
    for row, name in zip(rows, "abc", strict=True):
        accs = [accuracy(c) for c in study["configs"][name][1]]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == str(len(accs))
        assert cells[3].startswith(f"{100 * statistics.fmean(accs):.2f}%")
        assert cells[-1] == f"`{max(zip(accs, study['ids'][name], strict=True))[1]}`"
        if len(accs) > 1:
            sd = statistics.stdev(accs)
            half = student_t.ppf(0.975, len(accs) - 1) * sd / math.sqrt(len(accs))
            mean = statistics.fmean(accs)
            assert cells[4] == f"{100 * (mean - half):.2f} to {100 * (mean + half):.2f}%"
        if name != "a":
            delta = statistics.fmean(accs) - statistics.fmean(base)
            assert cells[5] == f"{100 * delta:+.2f} pp"
    assert "baseline" in rows[0]
    assert "not tested" in rows[2]  # one run: no test against the baseline


@pytest.mark.slow  # renders a whole report
def test_best_run_galleries(study: dict) -> None:
    section = sections(study["md"])["Grad-CAM of each configuration's best run"]
    best = study["best_a"]
    copied = study["out"] / f"figures/{best}-gradcam-gradcam.png"
    grid = study["runs"] / best / "gradcam" / "gradcam" / "grid.png"
    assert copied.read_bytes() == grid.read_bytes()
    assert f"]({copied.relative_to(study['out'])})" in section
    assert section.count("No Grad-CAM gallery for this run") == 2


@pytest.mark.slow  # renders a whole report
def test_the_observations_section(study: dict) -> None:
    section = sections(study["md"])["Observations"]
    everything = [c for name in "abc" for c in study["configs"][name][1]]
    gap = statistics.fmean(gap_of(c) for c in everything)
    assert f"gap **{100 * gap:+.2f} pp**" in section
    assert "bootstrap over 7 runs" in section
    assert re.search(r"rigid objects \(automobile, ship, truck\) best.*\*\*holds\*\*", section)
    assert "right predictions: 75.0%" in section  # (50/60 + 40/60) / 2
    assert "wrong predictions: 25.0%" in section


@pytest.mark.parametrize(("interval", "drawn"), [
    ((0.45, 0.75), (45, 75)),
    ((-0.2, 1.4), (0, 100)),  # two runs far apart: the t interval leaves 0-100%, drawn cut
])
def test_error_bars_are_drawn(tmp_path: Path, interval: tuple[float, float],
                              drawn: tuple[float, float]) -> None:
    """A bar with an interval has a long black vertical line from its low to its high end; a
    configuration with one run has none."""
    fig = figures.study_accuracy_figure(["a", "b"], [0.6, 0.7], [interval, (None, None)],
                                        [[0.5, 0.7], [0.7]])  # no dot on the bar's axis
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    height = fig.bbox.height
    assert ax.get_ylim()[1] <= 108

    def pixel(x: float, y: float) -> tuple[int, int]:
        px, py = ax.transData.transform((x, y))
        return round(px), round(height - py)

    x0, top0 = pixel(0, drawn[1])
    _, bottom0 = pixel(0, drawn[0])
    x1, _ = pixel(1, 70)
    path = figures.save(fig, tmp_path / "bars.png")
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert rgb.shape[0] == round(height)
    dark = longest_dark_run(rgb[:, x0])
    assert 0.9 * (bottom0 - top0) <= dark <= bottom0 - top0 + 6  # the caps are 2 px thick
    assert longest_dark_run(rgb[:, x1]) < 15


def longest_dark_run(column: np.ndarray) -> int:
    best = run = 0
    for dark in (column.max(axis=1) < 70):
        run = run + 1 if dark else 0
        best = max(best, run)
    return best


def test_bands_are_filled_between_min_and_max(tmp_path: Path) -> None:
    bands = [{"epoch": e, "n": 3, "mean": 0.5 + 0.05 * e, "min": 0.3 + 0.05 * e,
              "max": 0.7 + 0.05 * e, "std": 0.1} for e in range(1, 5)]
    fig = figures.band_curves_figure({"a": bands})
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    height = fig.bbox.height
    px, py_min = ax.transData.transform((2.5, 100 * (0.3 + 0.125)))
    _, py_mean = ax.transData.transform((2.5, 100 * (0.5 + 0.125)))
    path = figures.save(fig, tmp_path / "bands.png")
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    # halfway between the band's low edge and the mean line: the band colour over white
    inside = rgb[round(height - (py_min + py_mean) / 2), round(px)]
    line = np.array([int(figures.color(0)[i:i + 2], 16) for i in (1, 3, 5)])
    expected = 255 - 0.25 * (255 - line)
    assert np.abs(inside - expected).max() <= 12, (inside, expected)
    outside = rgb[round(height - py_min) + 25, round(px)]  # below the band: white
    assert outside.min() >= 240


@pytest.mark.slow  # renders a whole report
def test_old_runs_without_a_study_report_as_today(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20250301-090000-l1-0a01", 1, final_acc=0.95)
    write_run(runs, "20250301-100000-l3-0c03", 3, final_acc=0.88)
    written = write_report(runs, out_dir=tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Comparison" in md and "## Configurations" not in md
    assert written["study"] is None and len(written["runs"]) == 2


def test_bad_requests_write_nothing(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "never"
    run = study_run(runs, "20250301-090000-l3-0a01", 3, 0, HOLDS[0], SUPPORT)
    with pytest.raises(ConfigError, match="not both"):
        write_report(runs, [run.id], out_dir=out, study="s1")
    with pytest.raises(NotFoundError, match="no runs in study 'nope'"):
        write_report(runs, out_dir=out, study="nope")
    write_run(tmp_path / "runs2", "20250301-090000-l3-0a01", 3, state="running", done_epochs=1,
              config={"study": "busy"})
    with pytest.raises(NotFoundError, match="no finished run"):
        write_report(tmp_path / "runs2", out_dir=out, study="busy")
    assert not out.exists()


@pytest.mark.slow  # the CLI's imports
def test_cli_report_study(study: dict, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--study", "s1", "-o", str(out), "--json", "--runs-dir",
              str(study["runs"])])
    captured = capsys.readouterr()
    assert stopped.value.code == 0, captured.err
    written = json.loads(captured.out)
    assert written["study"] == "s1" and len(written["runs"]) == 7
    assert (out / "report.md").read_text().startswith("# Study `s1`")

"""`lab compare --study` and the grouped level comparison (issue 15, items 3 and 6): studies
written to disk with known accuracies (no training), compared through the CLI in this process,
and every figure checked against what the test computes itself from the definitions (the
statistics module and scipy's t quantiles)."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import t as student_t

from lab.cli import main
from lab.runs import RunDir, atomic_write_json
from lab.views.compare import comparison
from tests.cli_inprocess import one_click_command
from tests.tui_runs import write_run, write_study


@pytest.fixture(autouse=True, scope="module")
def _one_click_command() -> Iterator[None]:
    yield from one_click_command()


# ---- the textbook numbers -------------------------------------------------------------------
def t_interval(values: list[float]) -> tuple[float, float]:
    n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def welch_p(a: list[float], b: list[float]) -> float:
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * student_t.sf(abs(statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb),
                            df)


def expected_verdict(a: list[float], base: list[float]) -> str:
    if len(a) < 2 or len(base) < 2:
        return "n too small"
    return "within noise" if welch_p(a, base) >= 0.05 else "beyond noise"


# ---- studies on disk --------------------------------------------------------------------------
_count = iter(range(1, 10_000))


def write_group(runs: Path, study: str, level: int, accs: list[float], day: int = 2,
                **config: Any) -> list[str]:
    """Finished runs of one configuration, one per seed, with exactly these test accuracies."""
    ids = []
    for seed, acc in enumerate(accs):
        k = next(_count)
        run_id = f"202503{day:02d}-10{k:04d}-l{level}-{k:04x}"
        run = write_run(runs, run_id, level, final_acc=acc,
                        created=f"2025-03-{day:02d}T10:{k // 60 % 60:02d}:{k % 60:02d}+00:00",
                        config={"study": study, "seed": seed, **config})
        result = json.loads(run.result_path.read_text())
        atomic_write_json(run.result_path, {**result, "test_acc": acc})
        ids.append(run_id)
    return ids


# (name, level, config changes, test accuracies): rows in the table's order
CLOSE_AND_FAR = [("L1", 1, {}, [0.80, 0.82, 0.81]), ("L2", 2, {}, [0.86, 0.85, 0.88]),
                 ("L3", 3, {}, [0.81, 0.84, 0.80])]
LR_SWEEP = [("L3 lr=0.0001", 3, {"lr": 1e-4}, [0.70, 0.72, 0.69, 0.71]),
            ("L3 lr=0.001", 3, {"lr": 1e-3}, [0.74, 0.73, 0.755, 0.76]),
            ("L3 lr=0.003", 3, {"lr": 3e-3}, [0.69, 0.73, 0.71, 0.75])]
ONE_SEED = [("L1", 1, {}, [0.80, 0.83]), ("L2", 2, {}, [0.90]), ("L3", 3, {}, [0.7, 0.7])]
STUDIES = [pytest.param(CLOSE_AND_FAR, id="levels"), pytest.param(LR_SWEEP, id="lr sweep"),
           pytest.param(ONE_SEED, id="one seed")]


def write_groups(runs: Path, study: str, groups: list) -> None:
    for _, level, config, accs in groups:
        write_group(runs, study, level, accs, **config)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list], Path]:
    """A runs directory holding study `levels` made of `groups` and a run of study `grid`,
    written once per module (the tests that use it only read)."""
    made: dict[int, Path] = {}

    def runs_for(groups: list) -> Path:
        if id(groups) not in made:
            path = tmp_path_factory.mktemp("study")
            write_groups(path, "levels", groups)
            write_group(path, "grid", 3, [0.5], day=1)
            made[id(groups)] = path
        return made[id(groups)]

    return runs_for


def lab(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    return int(stopped.value.code), captured.out, captured.err


def _row_line(text: str, number: int) -> str:
    """Row `number` of a table with the lines its wrapped cells continue on."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [str(number)])
    end = next((i for i in range(start + 1, len(lines))
                if not lines[i].strip() or lines[i][:4].strip()), len(lines))
    return "\n".join(lines[start:end])


def _verdicts(row: str) -> set[str]:
    """The verdict words in a row, each possibly wrapped over two lines."""
    words = row.split()
    return {verdict for verdict, last in (("within noise", "within"), ("beyond noise", "beyond"),
                                          ("n too small", "small")) if last in words}


# ---- item 3: one row per configuration ------------------------------------------------------
@pytest.mark.parametrize("groups", STUDIES)
def test_the_json_figures_are_the_textbook_ones(written: Callable[[list], Path], groups: list,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lab(["compare", "--study", "levels", "--json", "--runs-dir",
                          str(written(groups))], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["baseline"] == 0 and doc["skipped"] == [] and doc["unfinished"] == []
    assert [r["name"] for r in doc["rows"]] == [name for name, *_ in groups]
    base = groups[0][3]
    for row, (_, _, _, accs) in zip(doc["rows"], groups, strict=True):
        acc = row["test_acc"]
        assert acc["n"] == len(accs) and row["seeds"] == list(range(len(accs)))
        assert acc["mean"] == pytest.approx(statistics.fmean(accs), abs=1e-12)
        if len(accs) > 1:
            assert acc["std"] == pytest.approx(statistics.stdev(accs), abs=1e-12)
            low, high = t_interval(accs)
            assert (acc["ci_low"], acc["ci_high"]) == (pytest.approx(low, abs=1e-9),
                                                       pytest.approx(high, abs=1e-9))
        else:
            assert acc["std"] is None and acc["ci_low"] is None
        versus = row["versus_baseline"]
        if accs is base:
            assert versus is None and row["baseline"]
            continue
        assert versus["delta"] == pytest.approx(statistics.fmean(accs) - statistics.fmean(base))
        assert versus["verdict"] == expected_verdict(accs, base)
        if len(accs) > 1 and len(base) > 1:
            assert versus["p"] == pytest.approx(welch_p(accs, base), rel=1e-6)
        else:
            assert versus["p"] is None


def test_the_per_class_f1_is_the_mean_over_each_configurations_runs(
        written: Callable[[list], Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = written(CLOSE_AND_FAR)
    f1: dict[str, list[dict[str, list[float]]]] = {}
    for run in sorted(runs.iterdir()):
        if json.loads((run / "config.json").read_text())["study"] != "levels":
            continue
        result = json.loads((run / "result.json").read_text())
        level = result["level"]
        for entry in result["per_class"]:
            f1.setdefault(entry["class"], [{}, {}, {}])[level - 1].setdefault(
                "f1", []).append(entry["f1"])
    code, out, _ = lab(["compare", "--study", "levels", "--json", "--runs-dir", str(runs)],
                       capsys)
    doc = json.loads(out)
    assert [entry["class"] for entry in doc["per_class"]] == list(f1)
    for entry in doc["per_class"]:
        for cell, mine in zip(entry["f1"], f1[entry["class"]], strict=True):
            assert cell["n"] == 3
            assert cell["mean"] == pytest.approx(statistics.fmean(mine["f1"]), abs=1e-12)
            assert cell["std"] == pytest.approx(statistics.stdev(mine["f1"]), abs=1e-12)
    code, out, _ = lab(["compare", "--study", "levels", "--per-class", "--runs-dir",
                        str(runs)], capsys)
    assert code == 0 and "Per-class F1" in out
    cell = doc["per_class"][3]["f1"][1]
    assert f"{cell['mean']:.3f} ± {cell['std']:.3f}" in out


@pytest.mark.parametrize("columns", ["80", "160"])
@pytest.mark.parametrize("groups", STUDIES)
def test_the_table_says_within_noise_exactly_where_p_is_at_least_005(
        written: Callable[[list], Path], groups: list, columns: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = lab(["compare", "--study", "levels", "--runs-dir", str(written(groups))],
                         capsys)
    assert code == 0, err
    base = groups[0][3]
    for number, (name, _, _, accs) in enumerate(groups, start=1):
        line = _row_line(out, number)
        assert name in line
        mean = f"{100 * statistics.fmean(accs):.2f}%"
        spread = f" ± {100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        assert mean + spread in line, line
        if len(accs) > 1:
            low, high = t_interval(accs)
            assert f"{100 * low:.2f}–{100 * high:.2f}" in line, line
        assert _verdicts(line) == (set() if number == 1 else {expected_verdict(accs, base)}), \
            line
    bare = "".join(out.split())  # the notes wrap at any width, also inside "t-test"
    assert "Welch'st-test" in bare and "Student'stinterval" in bare
    assert ("ntoosmall:" in bare) == any(len(g[3]) < 2 for g in groups)


@pytest.mark.parametrize(("choice", "index"), [("2", 1), ("L2", 1), ("l3", 2), ("1", 0)])
def test_the_baseline_is_chosen_by_number_or_name(written: Callable[[list], Path], choice: str,
                                                  index: int,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lab(["compare", "--study", "levels", "--baseline", choice, "--json",
                          "--runs-dir", str(written(CLOSE_AND_FAR))], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["baseline"] == index
    assert [r["baseline"] for r in doc["rows"]] == [i == index for i in range(3)]
    base = CLOSE_AND_FAR[index][3]
    for row, (_, _, _, accs) in zip(doc["rows"], CLOSE_AND_FAR, strict=True):
        if accs is not base:
            assert row["versus_baseline"]["p"] == pytest.approx(welch_p(accs, base), rel=1e-6)
    assert any(f"baseline #{index + 1} {CLOSE_AND_FAR[index][0]}" in n for n in doc["notes"])


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["--study", "levles"], 3, "did you mean 'levels'?"),
    (["--study", "zzz"], 3, "known: grid, levels"),
    (["--study", "levels", "--baseline", "0"], 2, "rows 1 to 3"),
    (["--study", "levels", "--baseline", "4"], 2, "rows 1 to 3"),
    (["--study", "levels", "--baseline", "L4"], 2, "rows: L1, L2, L3"),
    (["--study", "levels", "--baseline", "L 2"], 2, "did you mean 'L2'?"),
    (["--baseline", "2"], 2, "go with --study"),
    (["--per-class"], 2, "go with --study"),
    (["20250301-000000-l1-0000", "--study", "levels"], 2, "not both"),
])
def test_bad_study_arguments_get_one_line(written: Callable[[list], Path], argv: list[str],
                                          code: int, words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs = written(CLOSE_AND_FAR)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in runs.rglob("*"))
    got, out, err = lab(["compare", *argv, "--runs-dir", str(runs)], capsys)
    assert got == code and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert sorted((str(p), p.stat().st_mtime_ns) for p in runs.rglob("*")) == before


def test_a_study_without_any_known_study_says_so(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_study(tmp_path)  # old runs: no study at all
    code, _, err = lab(["compare", "--study", "levels", "--runs-dir", str(tmp_path)], capsys)
    assert code == 3 and "no run belongs to a study yet" in err


def test_unreadable_and_unfinished_runs_are_left_out_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_groups(tmp_path, "s1", CLOSE_AND_FAR)
    broken = write_run(tmp_path, "20250303-000000-l2-dead", 2, corrupt="result",
                       config={"study": "s1", "seed": 9})
    write_run(tmp_path, "20250303-000001-l2-beef", 2, state="failed", done_epochs=2,
              config={"study": "s1", "seed": 8})
    code, out, err = lab(["compare", "--study", "s1", "--json", "--runs-dir", str(tmp_path)],
                         capsys)
    assert code == 0
    doc = json.loads(out)
    assert [s["run_id"] for s in doc["skipped"]] == [broken.id]
    assert doc["unfinished"] == [{"run_id": "20250303-000001-l2-beef", "state": "failed"}]
    assert [r["test_acc"]["n"] for r in doc["rows"]] == [3, 3, 3]  # neither counted
    assert err.count("left out of the comparison") == 1 and str(broken.result_path) in err
    notes = " ".join(doc["notes"])
    assert f"left out: 1 run(s) whose records cannot be read: {broken.id}" in notes
    assert "not counted: 1 run(s) without a result yet (1 failed)" in notes


# ---- item 2: `lab compare` groups a level by its study's seeds ------------------------------
def test_old_runs_without_a_study_compare_as_before(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ids = write_study(tmp_path)
    rows = comparison(tmp_path)
    assert [r["run_id"] for r in rows] == [ids["l1"], ids["l2"], ids["l3"]]
    assert [r["test_acc"] for r in rows] == pytest.approx([0.94, 0.96, 0.87])
    assert all(r["group"] is None and r["versus_l1"] is None for r in rows)
    code, out, _ = lab(["compare", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0 and "95% CI" not in out and "grouped" not in out


def test_a_level_whose_newest_run_repeats_seeds_in_a_study_is_compared_as_the_group(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    write_study(tmp_path)  # older single runs of each level
    l1 = write_group(tmp_path, "levels", 1, [0.80, 0.82, 0.81])
    l2 = write_group(tmp_path, "levels", 2, [0.86, 0.85, 0.88])
    write_group(tmp_path, "levels", 2, [0.99], day=1, lr=1e-3)  # another config: not in L2
    rows = comparison(tmp_path)
    assert [r["level"] for r in rows] == [1, 2, 3]
    one, two, three = rows
    assert sorted(one["group"]["runs"]) == sorted(l1)
    assert sorted(two["group"]["runs"]) == sorted(l2)
    assert three["group"] is None and three["run_id"] == "20250301-100000-l3-0c03"
    for row, accs in ((one, [0.80, 0.82, 0.81]), (two, [0.86, 0.85, 0.88])):
        assert row["group"]["n"] == 3 and row["group"]["study"] == "levels"
        assert row["test_acc"] == pytest.approx(statistics.fmean(accs))
        assert row["group"]["test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
        low, high = t_interval(accs)
        assert row["group"]["test_acc"]["ci_low"] == pytest.approx(low)
        assert row["group"]["test_acc"]["ci_high"] == pytest.approx(high)
    assert one["versus_l1"] is None
    assert two["versus_l1"]["p"] == pytest.approx(
        welch_p([0.86, 0.85, 0.88], [0.80, 0.82, 0.81]), rel=1e-6)
    assert two["delta_vs_l1"] == pytest.approx(statistics.fmean([0.86, 0.85, 0.88]) - 0.81)
    assert three["versus_l1"]["verdict"] == "n too small"
    code, out, _ = lab(["compare", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0
    line = _row_line(out, 2)
    assert "86.33%" in line and "± 1.53" in line and _verdicts(line) == {"beyond noise"}, line
    flat = " ".join(out.split())
    assert "grouped: L1 (3 runs of study levels), L2 (3 runs of study levels)" in flat


@pytest.mark.parametrize("newest", ["no study", "one seed"])
def test_a_level_stands_by_one_run_when_its_newest_run_repeats_nothing(
        tmp_path: Path, newest: str) -> None:
    write_group(tmp_path, "levels", 1, [0.80, 0.82, 0.81])
    if newest == "no study":
        write_run(tmp_path, "20250309-000000-l1-ffff", 1, final_acc=0.71)
    else:
        write_group(tmp_path, "levels", 1, [0.7], day=9, lr=1e-3)
    [row] = comparison(tmp_path)
    assert row["group"] is None and row["test_acc"] == pytest.approx(0.70)
    assert row["run_id"].startswith("20250309")


def test_a_broken_member_is_left_out_of_its_group(tmp_path: Path) -> None:
    ids = write_group(tmp_path, "levels", 1, [0.80, 0.82, 0.81])
    RunDir(tmp_path / ids[1]).result_path.write_text("{")
    skipped: list[str] = []
    [row] = comparison(tmp_path, on_skip=lambda run_id, why: skipped.append(run_id))
    assert skipped == [ids[1]]
    assert row["group"]["n"] == 2 and row["test_acc"] == pytest.approx(0.805)


# ---- item 3 in the console: the same rows, with n and ± columns -------------------------------
@pytest.mark.slow  # the console under the Pilot
def test_the_compare_screen_shows_a_level_as_its_study_group(lab_dirs: dict[str, Path]) -> None:
    from tests.console_view import compare_screen  # the console: only for this test

    runs = lab_dirs["runs"]
    write_study(runs)
    write_group(runs, "levels", 1, [0.80, 0.82, 0.81])
    l2 = write_group(runs, "levels", 2, [0.86, 0.85, 0.88])
    shown = asyncio.run(compare_screen(runs, lab_dirs["data"], size=(160, 40)))
    assert shown["names"][1] == f"L2 {l2[-1][-4:]}"
    lines = shown["table"].splitlines()
    header = next(line for line in lines if line.strip())
    assert all(name in header.split() for name in ("n", "±", "CI", "p")), header
    line = next(x for x in lines if f"L2 {l2[-1][-4:]}" in x)
    low, high = t_interval([0.86, 0.85, 0.88])
    for text in ("86.33%", "+5.33", " 3 ", "± 1.53", f"{100 * low:.2f}–{100 * high:.2f}",
                 f"{welch_p([0.86, 0.85, 0.88], [0.80, 0.82, 0.81]):.3f}", "beyond noise"):
        assert text in line, (text, line)
    assert "n too small" in next(x for x in lines if "L3 0c03" in x)
    assert "grouped: L1 (3 runs of study levels)" in " ".join(shown["table"].split())

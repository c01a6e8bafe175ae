"""Which classes are marked weak (issue 14, defect 8): only those clearly below the rest, never
a class tied with the best or as good as one left unmarked; one rule for `lab show`, the report
and the console (`lab.views.states.weakest_classes`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.runs import RunDir, atomic_write_json
from lab.views.states import weakest_classes
from tests.cli_inprocess import one_click_command
from tests.tui_runs import write_run
from tui.detail import weakest

# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def _table(f1: list[float]) -> list[dict]:
    return [{"class": f"c{i}", "precision": v, "recall": v, "f1": v, "support": 10}
            for i, v in enumerate(f1)]


F1 = st.floats(0, 1, allow_nan=False).map(lambda v: round(v, 3))


@pytest.mark.slow  # Hypothesis
@settings(max_examples=100, deadline=None)
@given(st.lists(F1, min_size=1, max_size=30), st.integers(1, 5))
def test_never_a_class_as_good_as_an_unmarked_one(f1: list[float], n: int) -> None:
    table = _table(f1)
    ranked = weakest_classes(table, n)
    marked = set(ranked)
    scores = {row["class"]: row["f1"] for row in table}
    assert all(scores[c] == scores[ranked[n - 1]] for c in ranked[n:])  # n, or a tie at the n-th
    unmarked = [scores[c] for c in scores if c not in marked]
    assert all(scores[c] < min(unmarked) for c in marked)


@pytest.mark.slow  # Hypothesis
@settings(max_examples=100, deadline=None)
@given(F1, st.integers(1, 30))
def test_never_marks_when_all_are_equal(value: float, count: int) -> None:
    assert weakest_classes(_table([value] * count)) == []


@pytest.mark.slow  # Hypothesis
@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.95, 1.0), min_size=2, max_size=30), st.floats(0, 0.7),
       st.integers(0, 30))
def test_marks_an_obvious_outlier(good: list[float], bad: float, where: int) -> None:
    f1 = list(good)
    f1.insert(where % (len(good) + 1), bad)
    assert weakest_classes(_table(f1)) == [f"c{f1.index(bad)}"]


@pytest.mark.parametrize(("f1", "weak"), [
    ([1.0] * 10, []),  # the case: a perfect run marked three classes
    ([1.0] * 7 + [0.99, 0.98, 0.97], []),  # near-perfect: nothing stands out
    ([0.95, 0.96, 0.94, 0.95, 0.62, 0.95, 0.97, 0.93, 0.55, 0.96], ["c8", "c4"]),
    ([0.80, 0.78, 0.62, 0.45, 0.70, 0.60, 0.82, 0.79, 0.85, 0.81], ["c3", "c5", "c2"]),  # L3
    ([0.2, 0.4, 0.6, 0.8, 1.0], []),  # spread evenly: nothing clearly below the rest
    ([0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0], ["c0", "c1", "c2"]),
    ([0.5] * 4 + [1.0] * 9, ["c0", "c1", "c2", "c3"]),  # a tie at the third is not split
    ([0.70, 0.71, 0.72, 0.73] + [1.0] * 9, ["c0", "c1", "c2"]),
])
def test_weak_classes_examples(f1: list[float], weak: list[str]) -> None:
    assert weakest_classes(_table(f1)) == weak
    assert weakest(_table(f1)) == weak  # the console's per-class tab


@pytest.mark.slow  # the CLI in process: its first call imports it all
@pytest.mark.parametrize(("f1", "marked"), [([1.0] * 10, 0), ([1.0] * 9 + [0.5], 1)])
def test_lab_show_marks_only_weak_classes(lab_dirs: dict, f1: list[float], marked: int,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(lab_dirs["runs"], "20250301-100000-l3-145d", 3)
    result = RunDir(run.path).result()
    assert result is not None
    for row, value in zip(result["per_class"], f1, strict=True):
        row["f1"] = value
    atomic_write_json(run.result_path, result)
    with pytest.raises(SystemExit) as exited:
        main(["show", "145d", "--runs-dir", str(lab_dirs["runs"])])
    assert exited.value.code == 0
    assert capsys.readouterr().out.count("◀ weak") == marked

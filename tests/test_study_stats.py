"""Grouping runs by configuration and the statistics of a study (lab/views/study.py), checked
against numbers the test computes itself from the definitions (the statistics module and the
t quantile), on runs written to disk as the engine leaves them."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import t as student_t

from lab.errors import NotFoundError
from lab.levels import level_config
from lab.views.study import (
    Sample,
    difference,
    group_label,
    group_samples,
    study_rows,
    study_samples,
    summarize,
    varying_fields,
)
from tests.tui_runs import write_run


def sample(run_id: str, acc: float, **changes: object) -> Sample:
    config = level_config(3).replace(dataset="digits", **changes)
    return Sample(run_id, config, acc, {"a": acc, "b": 1 - acc})


def t_interval(values: list[float]) -> tuple[float, float]:
    n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def welch(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Welch's t-test from its definition: (delta, low, high, two-sided p)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    delta = statistics.fmean(a) - statistics.fmean(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    se = math.sqrt(va + vb)
    p = 2 * student_t.sf(abs(delta / se), df)
    half = student_t.ppf(0.975, df) * se
    return delta, delta - half, delta + half, p


ACCS = st.lists(st.floats(0.0, 1.0, allow_nan=False).map(lambda x: round(x, 4)), min_size=2,
                max_size=8).filter(lambda v: len(set(v)) > 1)


@settings(max_examples=60, deadline=None)
@given(values=ACCS)
def test_the_mean_std_and_interval_are_the_textbook_ones(values: list[float]) -> None:
    s = summarize(values)
    assert s.n == len(values)
    assert s.mean == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert s.std == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)
    low, high = t_interval(values)
    assert (s.low, s.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert s.low <= s.mean <= s.high


@settings(max_examples=60, deadline=None)
@given(a=ACCS, b=ACCS)
def test_the_difference_is_welchs(a: list[float], b: list[float]) -> None:
    d = difference(a, b)
    delta, low, high, p = welch(a, b)
    assert d.delta == pytest.approx(delta, abs=1e-12)
    assert (d.low, d.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert d.p == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert d.within_noise == (p >= 0.05)


@pytest.mark.parametrize(("values", "baseline", "p", "noise"), [
    ([0.9], [0.8, 0.81], None, None),  # one run: nothing to test against
    ([0.9, 0.9], [0.9, 0.9], 1.0, True),  # identical and no spread: no difference
    ([0.91, 0.91], [0.9, 0.9], 0.0, False),  # no spread: the difference is exact
])
def test_samples_too_small_or_without_spread(values: list[float], baseline: list[float],
                                             p: float | None, noise: bool | None) -> None:
    d = difference(values, baseline)
    assert d.p == p and d.within_noise is noise
    assert d.delta == pytest.approx(statistics.fmean(values) - statistics.fmean(baseline))


def test_one_run_has_a_mean_and_no_spread() -> None:
    s = summarize([0.7])
    assert (s.n, s.mean, s.std, s.low, s.high) == (1, 0.7, None, None, None)


def test_runs_group_by_everything_but_the_seed_and_rows_name_what_varies() -> None:
    samples = [sample(f"r{lr}-{dropout}-{seed}", 0.5 + lr * 100 + dropout / 10 + seed / 1000,
                      lr=lr, dropout=dropout, seed=seed, study="grid", gradcam=seed)
               for lr in (1e-3, 3e-4) for dropout in (0.0, 0.5) for seed in (0, 1, 2)]
    groups = group_samples(samples)
    assert [len(g.samples) for g in groups] == [3, 3, 3, 3]
    assert all(g.seeds == [0, 1, 2] for g in groups)
    assert set(varying_fields(groups)) == {"lr", "dropout"}
    names = [group_label(g, varying_fields(groups)) for g in groups]
    assert names == ["L3 dropout=0 lr=0.001", "L3 dropout=0.5 lr=0.001",
                     "L3 dropout=0 lr=0.0003", "L3 dropout=0.5 lr=0.0003"]
    rows = study_rows(groups)
    assert rows[0]["baseline"] and rows[0]["versus_baseline"] is None
    for row, group in zip(rows, groups, strict=True):
        accs = [s.test_acc for s in group.samples]
        assert row["test_acc"]["n"] == 3
        assert row["test_acc"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert row["best_run"] == max(group.samples, key=lambda s: s.test_acc).run_id
    base = [s.test_acc for s in groups[0].samples]
    for row, group in zip(rows[1:], groups[1:], strict=True):
        delta, *_ = welch([s.test_acc for s in group.samples], base)
        assert row["versus_baseline"]["delta"] == pytest.approx(delta)


def test_study_samples_read_one_study_from_disk_and_skip_unfinished_and_broken(
        tmp_path: Path) -> None:
    for seed, acc in enumerate((0.8, 0.85, 0.9)):
        write_run(tmp_path, f"20250301-10000{seed}-l3-a{seed}00", 3, final_acc=acc,
                  config={"study": "s1", "seed": seed})
    write_run(tmp_path, "20250301-110000-l3-b000", 3, config={"study": "s2"})
    write_run(tmp_path, "20250301-110001-l3-c000", 3, state="running", config={"study": "s1"})
    write_run(tmp_path, "20250301-110002-l3-d000", 3, corrupt="result", config={"study": "s1"})
    skipped: list[str] = []
    samples = study_samples(tmp_path, "s1", on_skip=lambda run, why: skipped.append(run))
    assert [s.config.seed for s in samples] == [0, 1, 2]
    assert [s.test_acc for s in samples] == pytest.approx([0.79, 0.84, 0.89])
    assert skipped == ["20250301-110002-l3-d000"]
    [group] = group_samples(samples)
    assert group.accuracy().n == 3
    with pytest.raises(NotFoundError):
        study_samples(tmp_path, "nope")


def test_epoch_bands_are_the_per_epoch_mean_min_max_and_std() -> None:
    from lab.views.bands import epoch_bands

    runs = [
        [{"event": "epoch", "epoch": 1, "val_acc": 0.5}, {"event": "epoch", "epoch": 2,
                                                          "val_acc": 0.7}],
        [{"event": "epoch", "epoch": 1, "val_acc": 0.4}, {"event": "epoch", "epoch": 2,
                                                          "val_acc": 0.6},
         {"event": "epoch", "epoch": 2, "val_acc": 0.8},  # resumed: the last value counts
         {"event": "epoch", "epoch": 3, "val_acc": 0.9}],
        [{"event": "epoch", "epoch": 1, "val_acc": 0.6}, {"event": "epoch", "epoch": 2},
         {"event": "epoch", "epoch": 2, "val_acc": float("nan")}],  # nothing usable at 2
    ]
    bands = epoch_bands(runs)
    assert [b["epoch"] for b in bands] == [1, 2, 3]
    one, two, three = bands
    assert one["n"] == 3 and one["mean"] == pytest.approx(0.5)
    assert (one["min"], one["max"]) == (0.4, 0.6)
    assert one["std"] == pytest.approx(statistics.stdev([0.5, 0.4, 0.6]))
    assert two["n"] == 2 and two["mean"] == pytest.approx(0.75)
    assert (two["min"], two["max"]) == (0.7, 0.8)
    assert three == {"epoch": 3, "n": 1, "mean": 0.9, "min": 0.9, "max": 0.9, "std": None}
    assert epoch_bands([]) == []
    assert epoch_bands(runs, key="train_loss") == []


@pytest.mark.parametrize(("configs", "names"), [
    pytest.param([(1, {}), (2, {}), (3, {})], ["L1", "L2", "L3"], id="levels"),
    pytest.param([(1, {"lr": 1e-3}), (2, {"lr": 1e-3})], ["L1", "L2"],
                 id="levels with a shared change"),
    pytest.param([(2, {"lr": 1e-3}), (3, {})], ["L2 lr=0.001", "L3 lr=0.0001"],
                 id="a field one level changes"),
    pytest.param([(2, {}), (2, {"lr": 1e-3}), (3, {})],
                 ["L2 lr=0.0001", "L2 lr=0.001", "L3 lr=0.0001"], id="levels by lr"),
    pytest.param([(3, {"dropout": 0.0}), (3, {})], ["L3 dropout=0", "L3 dropout=0.5"],
                 id="one level"),
])
def test_rows_are_named_by_what_the_level_does_not_explain(
        configs: list[tuple[int, dict]], names: list[str]) -> None:
    """Levels differ in model, dropout, augmentation and weight decay by their presets: the
    level's name says that; a field is named where some row's value is not its level's."""
    samples = [Sample(f"r{i}", level_config(level).replace(dataset="digits", weights="none",
                                                           **changes), 0.5, {})
               for i, (level, changes) in enumerate(configs)]
    assert [row["name"] for row in study_rows(group_samples(samples))] == names

"""A group's mean curve and band (lab/views/bands.py), which runs form a group, a study's progress
counts (lab/views/study.py) and the overlay chart's band, checked against numbers the test
computes itself with the statistics module."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.levels import level_config
from lab.views import chart_parts as cp
from lab.views.bands import (
    curve_groups,
    epoch_band,
    epoch_values,
    overlay_curves,
    read_configs,
    shared_epochs,
)
from lab.views.charts import BAND_LABEL, overlay_chart
from lab.views.study import PROGRESS_BUCKETS, study_progress
from tests.tui_runs import write_run


def events(values: list[float | None], key: str = "val_acc") -> list[dict]:
    """Epoch events 1..n with `key` (None: the event lacks it), among other events."""
    out: list[dict] = [{"event": "start", "epoch": 0, "step": 0}]
    for epoch, value in enumerate(values, start=1):
        out.append({"event": "step", "epoch": epoch, "step": 10 * epoch, "loss": 1.0})
        out.append({"event": "epoch", "epoch": epoch, **({} if value is None else {key: value})})
    return out


RUNS = st.lists(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=6),
                min_size=1, max_size=5)


@settings(max_examples=30, deadline=None)
@given(runs=RUNS)
def test_every_epoch_has_the_mean_std_min_max_of_the_runs_that_reached_it(
        runs: list[list[float]]) -> None:
    band = epoch_band([events(r) for r in runs], "val_acc")
    longest = max(len(r) for r in runs)
    assert [p.epoch for p in band] == list(range(1, longest + 1))
    for p in band:
        values = [r[p.epoch - 1] for r in runs if len(r) >= p.epoch]
        assert p.n == len(values)
        assert p.mean == pytest.approx(statistics.fmean(values))
        assert (p.low, p.high) == (min(values), max(values))
        assert p.low <= p.mean + 1e-12 and p.mean <= p.high + 1e-12
        if len(values) > 1:
            assert p.std == pytest.approx(statistics.stdev(values))
        else:
            assert p.std is None
    shared = shared_epochs(band, len(runs))
    assert [p.epoch for p in shared] == list(range(1, min(len(r) for r in runs) + 1))


def test_a_band_by_hand() -> None:
    runs = [events([0.5, 0.7, 0.9]), events([0.3, 0.5]), events([0.4, 0.9, 0.8])]
    band = epoch_band(runs, "val_acc")
    assert [(p.epoch, p.n) for p in band] == [(1, 3), (2, 3), (3, 2)]
    assert band[0].mean == pytest.approx(0.4) and band[0].std == pytest.approx(0.1)
    assert (band[1].low, band[1].high) == (0.5, 0.9)
    assert band[2].mean == pytest.approx(0.85)
    assert [p.epoch for p in shared_epochs(band, 3)] == [1, 2]  # the third run stops at 2


@pytest.mark.parametrize(("raw", "expected"), [
    ([{"event": "epoch", "epoch": 1, "train_loss": 2.0},
      {"event": "epoch", "epoch": 1, "train_loss": 1.5}], {1: 1.5}),  # resumed: the last
    ([{"event": "epoch", "epoch": 1, "train_loss": float("nan")}], {}),  # diverged
    ([{"event": "epoch", "epoch": 1, "train_loss": "x"}], {}),
    ([{"event": "epoch", "epoch": 1}], {}),
    ([{"event": "test", "epoch": 1, "train_loss": 0.1}], {}),
])
def test_epoch_values_keep_only_numbers_of_epoch_events(raw: list[dict],
                                                        expected: dict) -> None:
    assert epoch_values(raw, "train_loss") == expected


def configs_on_disk(runs: Path) -> dict[str, str]:
    """Label -> run id: a study of L2 with two lrs (three seeds, two seeds), one L2 run with
    one seed of another study, and two runs with no study but the same config."""
    spec = {
        "a1": {"study": "s1", "seed": 1}, "a2": {"study": "s1", "seed": 2},
        "a3": {"study": "s1", "seed": 3},
        "b1": {"study": "s1", "seed": 1, "lr": 1e-3}, "b2": {"study": "s1", "seed": 2, "lr": 1e-3},
        "c1": {"study": "s2", "seed": 1},
        "n1": {"seed": 1}, "n2": {"seed": 2},
    }
    ids = {}
    for i, (label, config) in enumerate(spec.items()):
        run_id = f"20250301-0900{i:02d}-l2-{i:04x}"
        write_run(runs, run_id, 2, config=config)
        ids[label] = run_id
    return ids


def test_groups_are_runs_of_one_study_and_configuration_but_the_seed(tmp_path: Path) -> None:
    ids = configs_on_disk(tmp_path)
    configs = read_configs(tmp_path, {**ids, "queued": None, "gone": "20250301-000000-l1-dead"})
    assert sorted(configs) == sorted(ids)  # no run, or an unreadable one: left single
    groups = curve_groups(configs)
    assert groups == {"s1 L2 lr=0.0001": ["a1", "a2", "a3"], "s1 L2 lr=0.001": ["b1", "b2"]}


def test_overlay_curves_draw_a_group_as_its_mean_and_the_rest_as_before() -> None:
    series = {"a": events([0.5, 0.7, 0.9]), "b": events([0.3, 0.5]), "c": events([0.6])}
    points, bands = overlay_curves(series, {"g": ["a", "b"]})
    assert points == {"g ×2": [(1, pytest.approx(40.0)), (2, pytest.approx(60.0))],
                      "c": [(1, 60.0)]}
    assert bands == {"g ×2": [(1, 30.0, 50.0), (2, 50.0, 70.0)]}
    # no groups: exactly the points the overlay drew before studies
    assert overlay_curves(series, {})[0] == {
        name: [(e["epoch"], 100 * e["val_acc"]) for e in evs if e.get("event") == "epoch"]
        for name, evs in series.items()}


def test_the_chart_draws_the_band_in_a_dimmer_shade_of_the_series_colour() -> None:
    points = {"g ×3": [(1, 50.0), (2, 70.0), (3, 80.0)], "L1 0a01": [(1, 40.0), (2, 60.0),
                                                                      (3, 65.0)]}
    band = {"g ×3": [(1, 20.0, 60.0), (2, 45.0, 90.0), (3, 70.0, 95.0)]}
    kwargs = dict(title="validation accuracy", ylabel="%", width=70, height=20)
    plain_without = overlay_chart(points, color=False, **kwargs)
    plain_with = overlay_chart(points, color=False, bands=band, **kwargs)
    assert BAND_LABEL in plain_with and BAND_LABEL not in plain_without
    # the band widens the value axis to its extremes: 20 and 95 lie outside every series point
    ticks = [int(line.split("┤")[0]) for line in plain_with.splitlines() if "┤" in line]
    assert min(ticks) <= 25 and max(ticks) >= 90
    assert plain_with.count("·") > plain_without.count("·") + 20  # two edges and bars
    shade = cp.plotext_color(cp.dim_color(cp.series_color("g ×3")))
    code = "38;2;{};{};{}".format(*shade)
    assert code in overlay_chart(points, bands=band, **kwargs)
    assert code not in overlay_chart(points, **kwargs)


@pytest.mark.parametrize(("colour", "dimmed"), [("#000000", "#3a3a3a"), ("#ffffff", "#c6c6c6"),
                                                ("#808080", "#808080"), ("red+", "red")])
def test_dim_colours_move_toward_grey(colour: str, dimmed: str) -> None:
    assert cp.dim_color(colour) == dimmed


def test_study_progress_counts_every_state_once() -> None:
    states = [s for bucket in PROGRESS_BUCKETS.values() for s in bucket] + ["mystery"]
    accs = {"done": 0.9}
    p = study_progress((s, accs.get(s)) for s in states)
    assert p.total == len(states)
    assert p.counts == {bucket: len(members) + (bucket == "stopped")
                        for bucket, members in PROGRESS_BUCKETS.items()}
    members = [("done", 0.9), ("done", 0.8), ("done", None), ("running", 0.99),
               ("failed", None)]
    p = study_progress(members)
    assert (p.best, p.mean) == (0.9, pytest.approx(0.85))  # only finished runs count
    assert study_progress([("queued", None)]).mean is None


def test_key_label_names_a_configuration_like_group_label() -> None:
    from lab.views.study import Group, Sample, config_key, group_label, key_label

    configs = [level_config(2).replace(lr=lr, dataset="digits") for lr in (1e-3, 1e-4)]
    groups = [Group(config_key(c), [Sample(f"r{i}", c, 0.5, {})])
              for i, c in enumerate(configs)]
    varying = ["lr"]
    assert [key_label(g.key, varying) for g in groups] == \
        [group_label(g, varying) for g in groups] == ["L2 lr=0.001", "L2 lr=0.0001"]

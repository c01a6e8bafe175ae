"""The study's observations (lab/views/observations.py): class ranking, vehicle-vs-animal gap,
the rigid/deformable claim and the Grad-CAM centre share, checked against numbers the test
computes itself from synthetic runs with known per-class accuracies and maps with known heat."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta
from scipy.stats import t as student_t

from lab.errors import NotFoundError
from lab.views.observations import (
    central_box,
    central_share,
    load_records,
    observations,
    vehicle_animal_gap,
)
from tests.cli_inprocess import one_click_command
from tests.observation_runs import CIFAR, class_result, study_run, write_gallery

VEHICLES = ["airplane", "automobile", "ship", "truck"]
ANIMALS = ["bird", "cat", "deer", "dog", "frog", "horse"]
SUPPORT = 50

# per run, correct images of 50 per class: rigid classes best, cat/bird/dog worst
HOLDS = [
    {"airplane": 40, "automobile": 48, "bird": 30, "cat": 25, "deer": 36, "dog": 28,
     "frog": 38, "horse": 39, "ship": 47, "truck": 46},
    {"airplane": 41, "automobile": 49, "bird": 29, "cat": 22, "deer": 35, "dog": 31,
     "frog": 37, "horse": 40, "ship": 45, "truck": 47},
    {"airplane": 42, "automobile": 47, "bird": 31, "cat": 26, "deer": 37, "dog": 27,
     "frog": 39, "horse": 38, "ship": 48, "truck": 44},
]


def t_interval(values: list[float]) -> tuple[float, float]:
    n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def gap_of(correct: dict[str, int]) -> float:
    return (statistics.fmean(correct[c] / SUPPORT for c in VEHICLES)
            - statistics.fmean(correct[c] / SUPPORT for c in ANIMALS))


def level_of(obs: dict, level: int) -> dict:
    return next(entry for entry in obs["levels"] if entry["level"] == level)


@pytest.mark.parametrize("size", [7, 8, 16, 32, 224])
def test_the_central_box_holds_half_the_area_and_a_map_inside_it_all_its_heat(
        size: int) -> None:
    top, bottom, left, right = central_box(size, size)
    area = (bottom - top) * (right - left) / size ** 2
    assert abs(area - 0.5) <= 2 / size  # half the area, to a pixel's rounding
    assert top == size - bottom and left == size - right or top + 1 == size - bottom
    inside = np.zeros((size, size))
    inside[top:bottom, left:right] = 1.0
    assert central_share(inside) == 1.0
    assert central_share(1.0 - inside) == 0.0
    assert central_share(np.ones((size, size))) == pytest.approx(area)
    assert central_share(np.zeros((size, size))) is None  # no heat: no share


@pytest.mark.parametrize(("inside", "outside"), [(64, 0), (0, 96), (16, 48), (30, 30), (1, 3)])
def test_central_share_of_maps_with_known_heat(inside: int, outside: int) -> None:
    from tests.observation_runs import heat_map

    assert central_share(heat_map((inside, outside))) == pytest.approx(
        inside / (inside + outside))


def test_ranking_gap_and_claim_over_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, correct in enumerate(HOLDS):
        study_run(runs, f"2025030{seed}-100000-l2-000{seed}", 2, seed, correct, SUPPORT)
    obs = observations(load_records(runs, "s1"), "s1")
    level = level_of(obs, 2)
    assert level["n"] == 3 and level["datasets"] == ["cifar10"]
    means = {c: statistics.fmean(run[c] / SUPPORT for run in HOLDS) for c in CIFAR}
    expected = sorted(CIFAR, key=lambda c: (-means[c], CIFAR.index(c)))
    assert [r["class"] for r in level["classes"]] == expected
    for row in level["classes"]:
        values = [run[row["class"]] / SUPPORT for run in HOLDS]
        assert row["mean"] == pytest.approx(means[row["class"]])
        assert (row["low"], row["high"]) == pytest.approx(t_interval(values))
        assert row["interval"] == "runs" and row["rank"] == expected.index(row["class"]) + 1
    gap = level["groups"]["gap"]
    gaps = [gap_of(run) for run in HOLDS]
    assert gap["gap"] == pytest.approx(statistics.fmean(gaps))
    assert gap["vehicles"] == pytest.approx(statistics.fmean(
        statistics.fmean(run[c] / SUPPORT for c in VEHICLES) for run in HOLDS))
    # a percentile bootstrap of a mean lies within the runs' values and around their mean
    assert min(gaps) <= gap["low"] <= gap["gap"] <= gap["high"] <= max(gaps)
    assert gap["interval"] == "runs" and gap["n"] == 3
    claim = level["groups"]["claim"]
    assert claim["holds"] is True
    assert set(claim["best"]) == {"automobile", "ship", "truck"}
    assert set(claim["worst"]) == {"cat", "bird", "dog"}


@pytest.mark.parametrize(("swap", "best_has"), [
    (("truck", "horse"), "horse"),  # a rigid class drops out of the top three
    (("dog", "frog"), "truck"),  # a deformable animal climbs out of the bottom three
])
def test_the_claim_does_not_hold_when_the_ranking_says_otherwise(
        tmp_path: Path, swap: tuple[str, str], best_has: str) -> None:
    a, b = swap
    runs = tmp_path / "runs"
    for seed, correct in enumerate(HOLDS):
        changed = {**correct, a: correct[b], b: correct[a]}
        study_run(runs, f"2025030{seed}-100000-l1-000{seed}", 1, seed, changed, SUPPORT)
    claim = level_of(observations(load_records(runs, "s1")), 1)["groups"]["claim"]
    assert claim["holds"] is False
    assert best_has in claim["best"]


@pytest.mark.slow  # 9,999 resamples of 500 test images
def test_one_run_intervals_come_from_its_test_images(tmp_path: Path) -> None:
    """One run has no seed spread: a class's interval is the exact binomial one over its test
    images, and the gap's bootstrap resamples the images of each class."""
    runs = tmp_path / "runs"
    correct = HOLDS[0]
    study_run(runs, "20250301-100000-l3-0001", 3, 0, correct, SUPPORT)
    level = level_of(observations(load_records(runs, "s1")), 3)
    for row in level["classes"]:
        k = correct[row["class"]]
        low = beta.ppf(0.025, k, SUPPORT - k + 1) if k else 0.0
        high = beta.ppf(0.975, k + 1, SUPPORT - k) if k < SUPPORT else 1.0
        assert (row["low"], row["high"]) == pytest.approx((low, high))
        assert row["interval"] == "test images"
    gap = level["groups"]["gap"]
    assert gap["gap"] == pytest.approx(gap_of(correct)) and gap["interval"] == "test images"
    # the normal approximation of the same resampling: the gap's standard error from the
    # per-class binomial variances
    var = (sum(p * (1 - p) / SUPPORT for p in (correct[c] / SUPPORT for c in VEHICLES)) / 16
           + sum(p * (1 - p) / SUPPORT for p in (correct[c] / SUPPORT for c in ANIMALS)) / 36)
    half = 1.96 * math.sqrt(var)
    assert gap["high"] - gap["low"] == pytest.approx(2 * half, rel=0.15)
    assert gap["low"] < gap["gap"] < gap["high"]


def test_runs_that_agree_exactly_have_a_zero_width_gap_interval() -> None:
    results = [class_result(f"r{i}", 1, HOLDS[0], SUPPORT) for i in range(3)]
    gap = vehicle_animal_gap(results)
    assert gap["low"] == gap["high"] == pytest.approx(gap_of(HOLDS[0]))


def test_cam_central_share_right_against_wrong(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # (inside, outside) hot pixels: right predictions mostly central, mistakes mostly not
    right = [[(48, 16), (40, 24), (60, 4)], [(32, 32), (56, 8)]]
    wrong = [[(8, 56), (16, 48)], [(20, 60), (12, 36), (24, 24)]]
    for seed in range(2):
        run = study_run(runs, f"2025030{seed}-100000-l3-000{seed}", 3, seed, HOLDS[seed],
                        SUPPORT)
        write_gallery(run, right[seed], wrong[seed])
    no_gallery = study_run(runs, "20250309-100000-l3-0009", 3, 2, HOLDS[2], SUPPORT)
    no_maps = study_run(runs, "20250308-100000-l3-0008", 3, 3, HOLDS[2], SUPPORT)
    write_gallery(no_maps, [(10, 10)], [(10, 10)], raw=False)
    cam = level_of(observations(load_records(runs, "s1")), 3)["cam"]

    def shares(kind: list[list[tuple[int, int]]]) -> list[float]:
        return [i / (i + o) for run in kind for i, o in run]

    ok, bad = shares(right), shares(wrong)
    assert cam["runs"] == 2 and cam["correct"]["n"] == 5 and cam["wrong"]["n"] == 5
    assert cam["correct"]["mean"] == pytest.approx(statistics.fmean(ok))
    assert cam["wrong"]["mean"] == pytest.approx(statistics.fmean(bad))
    assert min(ok) <= cam["correct"]["low"] <= cam["correct"]["mean"] <= cam["correct"]["high"]
    diff = cam["difference"]
    assert diff["mean"] == pytest.approx(statistics.fmean(ok) - statistics.fmean(bad))
    assert diff["low"] > 0 and cam["holds"] is True
    assert set(cam["missing"]) == {no_gallery.id, no_maps.id}
    assert "no Grad-CAM gallery" in cam["missing"][no_gallery.id]
    assert "no raw maps" in cam["missing"][no_maps.id]
    top, bottom, left, right_edge = central_box(32, 32)
    assert cam["uniform"] == [pytest.approx((bottom - top) * (right_edge - left) / 32 ** 2)]


def test_cam_claim_does_not_hold_when_heat_does_not_move(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = study_run(runs, "20250301-100000-l2-0001", 2, 0, HOLDS[0], SUPPORT)
    same = [(30, 30), (40, 20), (20, 40)]
    write_gallery(run, same, same)
    cam = level_of(observations(load_records(runs, "s1")), 2)["cam"]
    assert cam["difference"]["mean"] == pytest.approx(0.0)
    assert cam["difference"]["low"] <= 0 <= cam["difference"]["high"]
    assert cam["holds"] is False


def test_digits_says_the_groups_do_not_apply(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    digits = {str(d): 40 + d for d in range(10)}
    for seed in range(2):
        run = study_run(runs, f"2025030{seed}-100000-l3-000{seed}", 3, seed, digits, SUPPORT,
                        dataset="digits")
        write_gallery(run, [(50, 10), (40, 20)], [(10, 50), (20, 30)])
    level = level_of(observations(load_records(runs, "s1")), 3)
    assert level["groups"] == {"applies": False,
                               "note": "class groups do not apply to digits"}
    assert [r["class"] for r in level["classes"]] == [str(d) for d in range(9, -1, -1)]
    assert level["cam"]["holds"] is True


def test_levels_are_kept_apart_and_runs_of_other_studies_left_out(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    study_run(runs, "20250301-100000-l1-0001", 1, 0, HOLDS[0], SUPPORT)
    study_run(runs, "20250302-100000-l1-0002", 1, 1, HOLDS[1], SUPPORT)
    study_run(runs, "20250303-100000-l3-0003", 3, 0, HOLDS[2], SUPPORT)
    study_run(runs, "20250304-100000-l3-0004", 3, 1, HOLDS[0], SUPPORT, study="other")
    obs = observations(load_records(runs, "s1"), "s1")
    assert [(e["level"], e["runs"]) for e in obs["levels"]] == [
        (1, ["20250301-100000-l1-0001", "20250302-100000-l1-0002"]),
        (3, ["20250303-100000-l3-0003"])]
    with pytest.raises(NotFoundError):
        load_records(runs, "nope")


@pytest.fixture(scope="module")
def cli() -> object:
    yield from one_click_command()


@pytest.mark.slow  # the CLI's imports
def test_cli_observations(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          cli: object) -> None:
    from lab.cli import main

    runs = tmp_path / "runs"
    for seed in range(2):
        study_run(runs, f"2025030{seed}-100000-l3-000{seed}", 3, seed,
                  {str(d): 40 + d for d in range(10)}, SUPPORT, dataset="digits")
        study_run(runs, f"2025031{seed}-100000-l2-001{seed}", 2, seed, HOLDS[seed], SUPPORT)

    def lab(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as stopped:
            main(list(argv))
        captured = capsys.readouterr()
        return int(stopped.value.code), captured.out, captured.err

    code, out, err = lab("observations", "--study", "s1", "--runs-dir", str(runs))
    assert code == 0, err
    assert "class groups do not apply to digits" in out
    assert "Claim \"rigid objects (automobile, ship, truck) best" in out and "**holds**" in out
    code, out, _ = lab("observations", "--study", "s1", "--json", "--runs-dir", str(runs))
    doc = json.loads(out)
    assert code == 0 and [e["level"] for e in doc["levels"]] == [2, 3]
    code, out, err = lab("observations", "--study", "nope", "--runs-dir", str(runs))
    assert code == 3 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("lab: error: no runs in study 'nope'")
    code, out, _ = lab("observations", "--json", "--runs-dir", str(runs))  # every finished run
    assert code == 0 and json.loads(out)["study"] is None
    assert sum(e["n"] for e in json.loads(out)["levels"]) == 4
    code, out, err = lab("observations", "--runs-dir", str(tmp_path / "empty"))
    assert code == 3 and out == "" and "no finished run yet" in err

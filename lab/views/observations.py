"""The study's qualitative observations turned into numbers with intervals, per level.

Two claims of the study are checked on the runs of a study (or on every finished run):
- *rigid objects are classified best, deformable animals worst*: per-class test accuracy
  (recall, from the confusion matrix) ranked, the vehicle-vs-animal gap of CIFAR-10, and the
  named claim (automobile, ship, truck the three best; cat, bird, dog the three worst);
- *Grad-CAM heat sits on the object when the model is right and drifts off it when wrong*: the
  share of a map's heat inside the central box of the image (the box with half the image's
  area, centred). The centre is a proxy for "on the object" (CIFAR-10's objects are mostly
  centred), not a segmentation. The maps are the raw ones the run's gallery saved
  (`gradcam/<name>/cams.npz`); galleries pick the most confident right and wrong images of
  each class, so the numbers describe those images, not a random draw.

Intervals are 95%: Student's t over runs for a class's mean accuracy (`lab.views.study`), and
scipy's percentile bootstrap (fixed seed, so a report is reproducible) for the gap and the CAM
shares. With one run the gap's interval resamples the test images of each class from its
confusion-matrix row, so it holds test-set noise only, never seed noise; the record says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.config import RunConfig
from lab.errors import DataError, LabError, describe_os_error
from lab.explain.index import read_galleries
from lab.runs import RunDir
from lab.views.study import CONFIDENCE, OnSkip, Sample, study_samples, summarize

VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
RIGID = ("automobile", "ship", "truck")  # the study's "classified best"
DEFORMABLE = ("cat", "bird", "dog")  # the study's "classified worst"
CENTRAL_AREA = 0.5  # the central box holds this share of the image's area
RESAMPLES = 9999
SEED = 0
BATCH = 256  # resamples scipy draws at once: 10 classes x 1,000 images stays ~20 MB


@dataclass(frozen=True)
class RunRecord:
    """What the observations read of one finished run."""

    run_id: str
    config: RunConfig
    result: dict[str, Any]
    run: RunDir


def main_gallery(galleries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The gallery that stands for a run: the end-of-run one (`gradcam`), else the newest."""
    return next((g for g in galleries if g["name"] == "gradcam"),
                galleries[0] if galleries else None)


# --- per-class accuracy ---------------------------------------------------------------------

def class_counts(result: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per class: (test images predicted right, test images), from the confusion matrix."""
    confusion = result["confusion"]
    return {name: (int(confusion[i][i]), int(sum(confusion[i])))
            for i, name in enumerate(result["classes"])}


def class_ranking(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Classes ranked by mean test accuracy over the runs, best first (ties by class order),
    each with a 95% interval: Student's t over the runs, or with one run the exact
    (Clopper-Pearson) interval over that class's test images. A t interval is cut to [0, 1]:
    an accuracy cannot leave it, and a few runs' interval otherwise would."""
    from scipy import stats

    counts = [class_counts(r) for r in results]
    names: list[str] = []
    for c in counts:
        names.extend(n for n in c if n not in names)
    rows = []
    for order, name in enumerate(names):
        pairs = [c[name] for c in counts if name in c and c[name][1] > 0]
        if not pairs:
            continue
        if len(pairs) == 1:
            k, n = pairs[0]
            ci = stats.binomtest(k, n).proportion_ci(CONFIDENCE, method="exact")
            row = {"n": 1, "mean": k / n, "low": float(ci.low), "high": float(ci.high),
                   "interval": "test images"}
        else:
            s = summarize(k / n for k, n in pairs)
            row = {"n": s.n, "mean": s.mean, "low": _clip(s.low), "high": _clip(s.high),
                   "interval": "runs"}
        rows.append({"class": name, "order": order, **row})
    rows.sort(key=lambda r: (-r["mean"], r["order"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
        del row["order"]
    return rows


def _clip(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def groups_apply(classes: Sequence[str]) -> bool:
    """Whether the vehicle/animal groups mean anything: the classes are CIFAR-10's."""
    return set(classes) == set(VEHICLES + ANIMALS)


def _group_gap(accuracies: dict[str, float]) -> float:
    return (math.fsum(accuracies[c] for c in VEHICLES) / len(VEHICLES)
            - math.fsum(accuracies[c] for c in ANIMALS) / len(ANIMALS))


def vehicle_animal_gap(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean accuracy of the vehicle classes minus that of the animal classes (each group's
    classes weigh alike), with a percentile bootstrap interval: over runs (n >= 2), or with
    one run over the test images of each class, resampled within the class."""
    per_run = []
    for result in results:
        counts = class_counts(result)
        accs = {c: k / n if n else 0.0 for c, (k, n) in counts.items()}
        per_run.append({"vehicles": _mean([accs[c] for c in VEHICLES]),
                        "animals": _mean([accs[c] for c in ANIMALS]), "gap": _group_gap(accs)})
    out = {name: _mean([r[name] for r in per_run]) for name in ("vehicles", "animals", "gap")}
    if len(results) >= 2:
        low, high = bootstrap_mean([r["gap"] for r in per_run])
        return {**out, "low": low, "high": high, "n": len(results), "interval": "runs"}
    counts = class_counts(results[0])
    samples = [np.repeat([1.0, 0.0], [k, n - k]) for k, n in
               (counts[c] for c in VEHICLES + ANIMALS)]
    if any(len(s) < 2 for s in samples):
        return {**out, "low": None, "high": None, "n": 1, "interval": None}
    nv = len(VEHICLES)

    def gap(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        means = [a.mean(axis=axis) for a in arrays]
        return sum(means[:nv]) / nv - sum(means[nv:]) / (len(means) - nv)

    low, high = _bootstrap(tuple(samples), gap)
    return {**out, "low": low, "high": high, "n": 1, "interval": "test images"}


def rigid_claim(ranking: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's claim, checked on the ranking: it holds when the three best classes are
    automobile, ship and truck and the three worst are cat, bird and dog (in any order)."""
    best = [r["class"] for r in ranking[:3]]
    worst = [r["class"] for r in ranking[-3:]]
    ranks = {r["class"]: r["rank"] for r in ranking}
    return {"holds": set(best) == set(RIGID) and set(worst) == set(DEFORMABLE),
            "best": best, "worst": worst,
            "ranks": {c: ranks.get(c) for c in RIGID + DEFORMABLE}}


# --- Grad-CAM heat in the centre -------------------------------------------------------------

def central_box(height: int, width: int, area: float = CENTRAL_AREA) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the centred box with `area` of the image's area: each side
    scaled by sqrt(area), rounded to whole pixels."""
    side = math.sqrt(area)
    h, w = max(1, round(height * side)), max(1, round(width * side))
    top, left = (height - h) // 2, (width - w) // 2
    return top, top + h, left, left + w


def central_share(cam: np.ndarray, area: float = CENTRAL_AREA) -> float | None:
    """The share of a map's heat inside the central box; None for a map with no heat."""
    heat = np.clip(np.asarray(cam, dtype=np.float64), 0.0, None)
    total = heat.sum()
    if not total > 0:
        return None
    top, bottom, left, right = central_box(*heat.shape, area)
    return float(heat[top:bottom, left:right].sum() / total)


def read_cam_shares(gradcam_dir: Path) -> dict[str, Any]:
    """The central shares of a run's gallery maps, split by right and wrong predictions.
    `error` says why there are none (no gallery, or one saved without raw maps)."""
    try:
        gallery = main_gallery(read_galleries(gradcam_dir))
    except (DataError, OSError) as exc:
        return {"error": f"gallery index unreadable: {exc}"}
    if gallery is None:
        return {"error": "no Grad-CAM gallery"}
    path = Path(gradcam_dir) / gallery["name"] / "cams.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            cams, true, predicted = saved["cams"], saved["true"], saved["predicted"]
    except FileNotFoundError:
        return {"error": f"gallery {gallery['name']!r} has no raw maps (cams.npz)"}
    except (OSError, KeyError, ValueError) as exc:
        return {"error": f"gallery {gallery['name']!r}: cams.npz unreadable ({exc})"}
    if cams.ndim != 3 or len(cams) != len(true) or len(true) != len(predicted):
        return {"error": f"gallery {gallery['name']!r}: cams.npz has mismatched arrays"}
    shares: dict[str, list[float]] = {"correct": [], "wrong": []}
    empty = 0
    for cam, t, p in zip(cams, true, predicted, strict=True):
        share = central_share(cam)
        if share is None:
            empty += 1
        else:
            shares["correct" if t == p else "wrong"].append(share)
    return {"gallery": gallery["name"], "size": list(cams.shape[1:]), "empty": empty, **shares}


def cam_observation(per_run: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean central share of right and of wrong predictions over the maps of the runs (pooled),
    each with a bootstrap interval over maps, and their difference (right minus wrong). The
    claim holds when the difference's interval lies above zero."""
    pooled: dict[str, list[float]] = {"correct": [], "wrong": []}
    sizes, missing, empty = set(), {}, 0
    for run_id, shares in per_run.items():
        if "error" in shares:
            missing[run_id] = shares["error"]
            continue
        sizes.add(tuple(shares["size"]))
        empty += shares["empty"]
        for kind in pooled:
            pooled[kind].extend(shares[kind])
    out: dict[str, Any] = {"central_area": CENTRAL_AREA, "runs": len(per_run) - len(missing),
                           "missing": missing, "empty_maps": empty}
    # the box's real share of the pixels: what heat spread evenly would give
    out["uniform"] = [_box_fraction(*s) for s in sorted(sizes)]
    for kind, values in pooled.items():
        low, high = bootstrap_mean(values)
        out[kind] = {"n": len(values), "mean": _mean(values) if values else None,
                     "low": low, "high": high}
    correct, wrong = pooled["correct"], pooled["wrong"]
    if correct and wrong:
        delta = _mean(correct) - _mean(wrong)
        low, high = (_bootstrap((np.asarray(correct), np.asarray(wrong)), _mean_difference)
                     if len(correct) >= 2 and len(wrong) >= 2 else (None, None))
        out["difference"] = {"mean": delta, "low": low, "high": high}
        out["holds"] = None if low is None else bool(low > 0)
    else:
        out["difference"], out["holds"] = None, None
    return out


def _box_fraction(height: int, width: int) -> float:
    top, bottom, left, right = central_box(height, width)
    return (bottom - top) * (right - left) / (height * width)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


# --- the bootstrap ---------------------------------------------------------------------------

def bootstrap_mean(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Percentile bootstrap 95% interval of a mean; (None, None) under two values."""
    if len(values) < 2:
        return None, None
    return _bootstrap((np.asarray(values, dtype=np.float64),), _mean_of)


def _mean_of(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis)


def _bootstrap(samples: tuple[np.ndarray, ...],
               statistic: Callable[..., np.ndarray]) -> tuple[float, float]:
    """scipy's percentile bootstrap, each sample resampled on its own, with a fixed seed."""
    from scipy import stats

    if all(np.ptp(s) == 0 for s in samples):  # no spread: every resample gives the same value
        value = float(statistic(*(s[None, :] for s in samples))[0])
        return value, value
    result = stats.bootstrap(samples, statistic, n_resamples=RESAMPLES, batch=BATCH,
                             confidence_level=CONFIDENCE, method="percentile",
                             vectorized=True, paired=False, rng=np.random.default_rng(SEED))
    ci = result.confidence_interval
    return float(ci.low), float(ci.high)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


# --- a study's observations -------------------------------------------------------------------

def load_records(runs_dir: Path, study: str | None = None,
                 on_skip: OnSkip | None = None) -> list[RunRecord]:
    """The finished runs of `study` (or all), oldest first; unreadable ones go to `on_skip`."""
    return records_of(runs_dir, study_samples(runs_dir, study, on_skip), on_skip)


def records_of(runs_dir: Path, samples: Sequence[Sample],
               on_skip: OnSkip | None = None) -> list[RunRecord]:
    """The samples' runs with their results; a result without a usable confusion matrix is
    reported to `on_skip` and left out."""
    records = []
    for sample in samples:
        run = RunDir(Path(runs_dir) / sample.run_id)
        try:
            result = run.result()
            if result is None:
                continue
            class_counts(result)
        except (LabError, OSError, KeyError, IndexError, TypeError) as exc:
            if on_skip is not None:
                error = describe_os_error(exc) if isinstance(exc, OSError) else exc
                on_skip(sample.run_id, f"{sample.run_id}: {error}")
            continue
        records.append(RunRecord(sample.run_id, sample.config, result, run))
    return records


def observations(records: Sequence[RunRecord], study: str | None = None) -> dict[str, Any]:
    """Per level (runs of every configuration of a level pooled): the class ranking, the
    vehicle-vs-animal gap and the rigid/deformable claim where the classes are CIFAR-10's
    (else a note that they do not apply), and the Grad-CAM centre shares."""
    by_level: dict[int | None, list[RunRecord]] = {}
    for record in records:
        by_level.setdefault(record.config.level, []).append(record)
    levels = []
    for level in sorted(by_level, key=lambda lv: (lv is None, lv or 0)):
        group = by_level[level]
        results = [r.result for r in group]
        datasets = sorted({str(r.get("dataset", g.config.dataset))
                           for r, g in zip(results, group, strict=True)})
        ranking = class_ranking(results)
        entry: dict[str, Any] = {
            "level": level, "label": f"L{level}" if level else "custom",
            "runs": [r.run_id for r in group], "n": len(group), "datasets": datasets,
            "classes": ranking}
        if all(groups_apply(r["classes"]) for r in results):
            entry["groups"] = {"applies": True, "gap": vehicle_animal_gap(results),
                               "claim": rigid_claim(ranking)}
        else:
            entry["groups"] = {"applies": False,
                               "note": f"class groups do not apply to {', '.join(datasets)}"}
        entry["cam"] = cam_observation({r.run_id: read_cam_shares(r.run.path / "gradcam")
                                        for r in group})
        levels.append(entry)
    return {"study": study, "confidence": CONFIDENCE, "central_area": CENTRAL_AREA,
            "levels": levels}

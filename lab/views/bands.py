"""A group's curve: the runs of one configuration (repeated over training seeds) as a mean per
epoch with a band around it, for the console's overlay and compare charts and the report.

Runs of a group may have different lengths (one still running, one stopped early).
`epoch_band` gives every epoch some run reached, with `n`, the number of runs that reached
it; the charts draw only the epochs every run of the group reached (`shared_epochs`), so the
mean never jumps where a run drops out, and a group's curve ends where its slowest run is.
The band is the min–max range of the runs: with the few seeds a study repeats (3 to 5), a
standard deviation is itself too noisy to draw, while min–max shows every run; `std` is given
too for anyone who wants it. The sums are plain (statistics.fmean/stdev): no interval here,
and the console draws these on its UI thread, where importing scipy would stall it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import LabError
from lab.runs import RunDir
from lab.views import chart_parts as cp
from lab.views.study import Group, config_key, key_label, varying_fields


@dataclass(frozen=True)
class BandPoint:
    """One epoch of a group: how many runs reached it, their mean, sample std (None for one
    run), minimum and maximum."""

    epoch: int
    n: int
    mean: float
    std: float | None
    low: float
    high: float


def epoch_values(events: Sequence[Mapping[str, Any]], key: str) -> dict[int, float]:
    """A run's `key` per epoch from its events (a resumed run's repeated epoch: the last);
    missing and non-finite values (a diverged run) are skipped."""
    return {epoch: value for epoch, record in cp.last_per_epoch(events).items()
            if (value := cp.num(record.get(key))) is not None}


def epoch_band(runs: Sequence[Sequence[Mapping[str, Any]]], key: str) -> list[BandPoint]:
    """Per epoch, over the runs that reached it: n, mean, std, min and max of `key`
    (e.g. "val_acc", "train_loss"), epochs in order."""
    per_run = [epoch_values(events, key) for events in runs]
    epochs = sorted({epoch for values in per_run for epoch in values})
    points = []
    for epoch in epochs:
        xs = [values[epoch] for values in per_run if epoch in values]
        std = statistics.stdev(xs) if len(xs) > 1 else None
        points.append(BandPoint(epoch, len(xs), statistics.fmean(xs), std, min(xs), max(xs)))
    return points


def epoch_bands(runs: Sequence[Sequence[Mapping[str, Any]]], key: str = "val_acc"
                ) -> list[dict[str, Any]]:
    """`epoch_band` as plain records (epoch, n, mean, min, max, std) for figures and JSON."""
    return [{"epoch": p.epoch, "n": p.n, "mean": p.mean, "min": p.low, "max": p.high,
             "std": p.std} for p in epoch_band(runs, key)]


def shared_epochs(points: Sequence[BandPoint], runs: int) -> list[BandPoint]:
    """The epochs all `runs` runs reached: what a chart draws."""
    return [p for p in points if p.n == runs]


# ---- which runs form a group ------------------------------------------------------------------
def read_configs(runs_dir: Path, run_ids: Mapping[str, str | None]) -> dict[str, RunConfig]:
    """Label -> config of each run that has a readable one (the others stay single curves)."""
    configs = {}
    for label, run_id in run_ids.items():
        if run_id is None:
            continue
        try:
            configs[label] = RunDir(Path(runs_dir) / run_id).config()
        except (LabError, OSError):
            continue
    return configs


def curve_groups(configs: Mapping[str, RunConfig]) -> dict[str, list[str]]:
    """Group name -> member labels: runs of one study with the same configuration but the
    seed, two or more of them. Runs outside a study stay single, as before studies existed.
    A name is the study and what sets its configuration apart within the study
    (`s1 L2 lr=0.001`), as `lab compare --study` names its rows."""
    by_key: dict[tuple[str, Any], list[str]] = {}
    for label, config in configs.items():
        if config.study:
            by_key.setdefault((config.study, config_key(config)), []).append(label)
    studies: dict[str, list[tuple[Any, ...]]] = {}
    for study, key in by_key:
        studies.setdefault(study, []).append(key)
    groups = {}
    for (study, key), labels in by_key.items():
        if len(labels) < 2:
            continue
        varying = varying_fields([Group(k) for k in studies[study]])
        groups[f"{study} {key_label(key, varying)}"] = labels
    return groups


def overlay_curves(series: Mapping[str, Sequence[Mapping[str, Any]]],
                   groups: Mapping[str, Sequence[str]], key: str = "val_acc",
                   scale: float = 100.0) -> tuple[dict[str, list[tuple[float, float]]],
                                                  dict[str, list[tuple[float, float, float]]]]:
    """What an overlay draws from each run's epoch events: the single runs' points, and per
    group its mean's points and its band (epoch, min, max), scaled (accuracy in %). A group's
    name gets its size (`s1 L2 ×3`); its members are not drawn one by one."""
    points: dict[str, list[tuple[float, float]]] = {}
    bands: dict[str, list[tuple[float, float, float]]] = {}
    grouped = {label for labels in groups.values() for label in labels}
    for name, labels in groups.items():
        members = [series[label] for label in labels if label in series]
        shared = shared_epochs(epoch_band(members, key), len(members))
        shown = f"{name} ×{len(members)}"
        points[shown] = [(p.epoch, scale * p.mean) for p in shared]
        bands[shown] = [(p.epoch, scale * p.low, scale * p.high) for p in shared]
    for label, events in series.items():
        if label not in grouped:
            points[label] = [(x, scale * y) for x, y in epoch_values(events, key).items()]
    return points, bands

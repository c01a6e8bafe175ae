"""Many runs of one configuration as one row: grouping, mean ± std, confidence intervals and
the test of a difference against a baseline.

A single run per configuration cannot say whether 93.5% against 94.7% is more than seed noise;
a study repeats each configuration over training seeds, and these numbers say how far apart the
configurations are and whether the gap is within noise. The statistics are scipy's (Student's t
interval for a mean, Welch's t-test and its interval for a difference), never hand-written, so
anyone can check them against their own tools. Clients (CLI, console, report) render these rows;
they never recompute them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.config import NOT_TRAINING, RunConfig, config_fields
from lab.errors import LabError, NotFoundError, describe_os_error
from lab.levels import LEVELS
from lab.runs import RunDir, list_runs

CONFIDENCE = 0.95  # every interval here is a 95% one
ALPHA = 1 - CONFIDENCE  # a difference with p >= ALPHA is reported as within noise

# What does not make two runs different configurations: the training seed (that is what a
# study repeats) and the fields that do not change what training computes.
REPEAT_FIELDS = frozenset({"seed"}) | NOT_TRAINING

OnSkip = Callable[[str, str], None]  # (run id, why): a run left out

# The words beside a difference: p >= ALPHA, p < ALPHA, and no test (a side with one run).
WITHIN_NOISE, BEYOND_NOISE, N_TOO_SMALL = "within noise", "beyond noise", "n too small"


@dataclass(frozen=True)
class Sample:
    """One finished run, as the statistics see it."""

    run_id: str
    config: RunConfig
    test_acc: float
    f1: dict[str, float]  # per class, in the run's class order


@dataclass(frozen=True)
class Summary:
    """n values: their mean, sample standard deviation and the t interval of the mean (None
    where n is too small to have one)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci_low": self.low,
                "ci_high": self.high}


@dataclass(frozen=True)
class Difference:
    """A group's mean minus the baseline's, Welch's test of it and its interval. `p` is None
    when either side has fewer than two runs: one run has no spread to test against."""

    delta: float
    low: float | None
    high: float | None
    p: float | None

    @property
    def within_noise(self) -> bool | None:
        """True when the test cannot tell the difference from seed noise; None: not tested."""
        return None if self.p is None else self.p >= ALPHA

    @property
    def verdict(self) -> str:
        """The plain word every client shows beside the difference."""
        if self.p is None:
            return N_TOO_SMALL
        return WITHIN_NOISE if self.within_noise else BEYOND_NOISE

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "ci_low": self.low, "ci_high": self.high, "p": self.p,
                "test": "welch" if self.p is not None else None,
                "within_noise": self.within_noise, "verdict": self.verdict}


@dataclass
class Group:
    """The runs of one configuration (everything equal but the training seed)."""

    key: tuple[tuple[str, Any], ...]
    samples: list[Sample] = field(default_factory=list)

    @property
    def config(self) -> RunConfig:
        return self.samples[0].config

    @property
    def level(self) -> int | None:
        return self.config.level

    @property
    def seeds(self) -> list[int]:
        return sorted(s.config.seed for s in self.samples)

    def accuracy(self) -> Summary:
        return summarize(s.test_acc for s in self.samples)

    def best(self) -> Sample:
        """The run with the highest test accuracy (the first of equals), e.g. for its gallery."""
        return max(self.samples, key=lambda s: s.test_acc)


def config_key(config: RunConfig) -> tuple[tuple[str, Any], ...]:
    """What makes two runs the same configuration: every field that changes training except
    the seed. Lists become tuples so keys hash."""
    values = config.to_dict()
    return tuple((name, _hashable(values[name])) for name in config_fields()
                 if name not in REPEAT_FIELDS)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def group_samples(samples: Iterable[Sample]) -> list[Group]:
    """Runs grouped by configuration, in level order and then in the order each configuration
    first appears (give them oldest first: a study's baseline, queued first, comes first)."""
    groups: dict[tuple[tuple[str, Any], ...], Group] = {}
    for sample in samples:
        key = config_key(sample.config)
        groups.setdefault(key, Group(key)).samples.append(sample)
    return sorted(groups.values(), key=lambda g: (g.level is None, g.level or 0))


def varying_fields(groups: list[Group]) -> list[str]:
    """The fields in which the groups differ: what names a row (`lr=0.001 dropout=0.5`)."""
    if len(groups) < 2:
        return []
    names = [name for name, _ in groups[0].key]
    return [name for i, name in enumerate(names)
            if len({g.key[i][1] for g in groups}) > 1]


def naming_fields(groups: list[Group]) -> list[str]:
    """The varying fields that name rows: those the level does not explain. Runs of Levels 1
    to 3 differ in model, dropout, augmentation and weight decay because their presets do;
    `L1`, `L2`, `L3` says that. A field stays when some group's value is not its level's."""
    def explained(name: str) -> bool:
        return all(g.level in LEVELS and dict(g.key)[name] == _hashable(
            getattr(LEVELS[g.level].config, name)) for g in groups)

    varying = varying_fields(groups)
    if "level" not in varying:
        return varying
    return [name for name in varying if name == "level" or not explained(name)]


def group_label(group: Group, varying: list[str]) -> str:
    """A row's name: its level and the values of the varying fields (level excluded)."""
    return key_label(group.key, varying)


def key_label(key: tuple[tuple[str, Any], ...], varying: list[str]) -> str:
    """`group_label` from a configuration key alone (a group whose runs are not finished)."""
    values = dict(key)
    level = f"L{values['level']}" if values.get("level") else "custom"
    parts = [f"{name}={show_value(values[name])}" for name in varying if name != "level"]
    return " ".join([level, *parts])


def show_value(value: Any) -> str:
    """A config value as a row name shows it: `0.001`, `8,16` for a tuple or list."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def summarize(values: Iterable[float]) -> Summary:
    """Mean, sample std (n-1) and Student's t 95% interval of the mean."""
    from scipy import stats

    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(data) / n
    if n < 2:
        return Summary(n, mean, None, None, None)
    std = float(stats.tstd(data)) if len(set(data)) > 1 else 0.0
    if std == 0.0:
        return Summary(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, float(low), float(high))


def difference(values: list[float], baseline: list[float]) -> Difference:
    """`values` against `baseline`: Welch's t-test (unequal variances) and the interval of the
    difference of means; without spread on either side the difference is exact."""
    from scipy import stats

    delta = math.fsum(values) / len(values) - math.fsum(baseline) / len(baseline)
    if len(values) < 2 or len(baseline) < 2:
        return Difference(delta, None, None, None)
    if len(set(values)) == 1 and len(set(baseline)) == 1:  # no noise at all: exact
        return Difference(delta, delta, delta, 1.0 if delta == 0 else 0.0)
    with warnings.catch_warnings():  # nearly equal values: scipy warns, the answer stands
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(values, baseline, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
    return Difference(delta, float(interval.low), float(interval.high), float(result.pvalue))


def study_rows(groups: list[Group], baseline: int = 0) -> list[dict[str, Any]]:
    """One row per configuration: name, level, n, seeds, mean ± std and interval of the test
    accuracy, and the difference against `groups[baseline]` (None on the baseline row)."""
    varying, naming = varying_fields(groups), naming_fields(groups)
    base = groups[baseline] if groups else None
    rows = []
    for i, group in enumerate(groups):
        accs = [s.test_acc for s in group.samples]
        versus = None
        if base is not None and i != baseline:
            versus = difference(accs, [s.test_acc for s in base.samples]).to_dict()
        rows.append({
            "name": group_label(group, naming),
            "level": group.level,
            "config": {name: _plain(value) for name, value in group.key
                       if name in varying or name == "level"},
            "runs": [s.run_id for s in group.samples],
            "seeds": group.seeds,
            "best_run": group.best().run_id,
            "test_acc": group.accuracy().to_dict(),
            "baseline": i == baseline,
            "versus_baseline": versus,
        })
    return rows


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def per_class_rows(groups: list[Group]) -> list[dict[str, Any]]:
    """Per class, each group's mean F1 with its std and interval (classes in the first run's
    order; a class a run lacks is left out of that run's figures)."""
    classes: list[str] = []
    for group in groups:
        for sample in group.samples:
            classes.extend(c for c in sample.f1 if c not in classes)
    rows = []
    for name in classes:
        cells = []
        for group in groups:
            values = [s.f1[name] for s in group.samples if name in s.f1]
            cells.append(summarize(values).to_dict() if values else None)
        rows.append({"class": name, "f1": cells})
    return rows


def read_sample(run: RunDir) -> Sample | None:
    """A finished run as a sample; None while it has no result. Raises LabError/OSError when
    its records cannot be read."""
    result = run.result()
    if result is None:
        return None
    config = run.config()
    f1 = {row["class"]: float(row["f1"]) for row in result["per_class"]}
    return Sample(run.id, config, float(result["test_acc"]), f1)


def study_samples(runs_dir: Path, study: str | None = None,
                  on_skip: OnSkip | None = None,
                  on_unfinished: OnSkip | None = None) -> list[Sample]:
    """Finished runs (of `study`, or all), oldest first; unreadable runs are reported to
    `on_skip` and left out, runs without a result yet to `on_unfinished` (run id, state). An
    unknown study name raises NotFoundError naming the closest known one."""
    samples, seen, names = [], False, set()
    for run in reversed(list_runs(runs_dir)):  # oldest first
        try:
            name = run.config().study
            names.add(name)
            if study is not None and name != study:
                continue
            seen = True
            sample = read_sample(run)
        except (LabError, OSError) as exc:
            if on_skip is not None:
                error = describe_os_error(exc) if isinstance(exc, OSError) else exc
                on_skip(run.id, str(error))
            continue
        if sample is not None:
            samples.append(sample)
        elif on_unfinished is not None:
            on_unfinished(run.id, run.live_state())
    if study is not None and not seen:
        raise unknown_study(study, sorted(names - {""}))
    return samples


# ---- a study's progress ----------------------------------------------------------------------
# Every state a job or run can show, in the five counts a study's progress is told in. A
# cancelled or interrupted job neither finished nor failed: it counts as stopped.
PROGRESS_BUCKETS: dict[str, tuple[str, ...]] = {
    "done": ("done",),
    "running": ("running", "cancelling"),
    "queued": ("queued", "created"),
    "failed": ("failed", "corrupt"),
    "stopped": ("cancelled", "interrupted"),
}
_BUCKET_OF = {state: bucket for bucket, states in PROGRESS_BUCKETS.items() for state in states}


@dataclass(frozen=True)
class Progress:
    """How far a study is: its members counted by state, and the test accuracy of the finished
    ones (best and mean; None until one has a result)."""

    counts: dict[str, int]
    total: int
    best: float | None
    mean: float | None


def study_progress(members: Iterable[tuple[str, float | None]]) -> Progress:
    """(state, test accuracy) of each job or run of a study; an unknown state counts as
    stopped rather than vanish from the total."""
    counts = dict.fromkeys(PROGRESS_BUCKETS, 0)
    accs: list[float] = []
    for state, acc in members:
        counts[_BUCKET_OF.get(str(state), "stopped")] += 1
        if state == "done" and acc is not None:
            accs.append(float(acc))
    return Progress(counts, sum(counts.values()), max(accs) if accs else None,
                    math.fsum(accs) / len(accs) if accs else None)


def unknown_study(study: str, known: list[str]) -> NotFoundError:
    """`no runs in study 'levles': did you mean 'levels'? known: grid, levels` (one line)."""
    import difflib

    close = difflib.get_close_matches(study, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    listed = f"known: {', '.join(known)}" if known else "no run belongs to a study yet"
    return NotFoundError(f"no runs in study {study!r}: {guess}{listed}",
                         hint="lab study lists the studies")

"""Studies: a grid of configs times training seeds, queued together under one name.

`lab submit --sweep lr=1e-3,3e-4 --seeds 3 --study NAME`, a study file (parsed elsewhere into a
base config and a sweep) and the console's new-job dialog all come here: `plan` expands the
grid and validates every config before anything is written, `submit_study` queues it in one
transaction (all of it or none), and `summaries`/`detail` say how far each study has got.

The grid's order is fixed so job ids read like the grid: the bases (one per `--level`) first,
then `itertools.product` over the sweep's fields in the order given (the last field varies
fastest), and each configuration's seeds together, `base.seed + 0 .. seeds - 1`. Training seeds
vary `seed` only; `split_seed` stays, so every run of a study sees the same split.

A study is its configs' `study` field, kept in the queue's `study` column too. Submitting to a
study that exists adds to it; a config (seed included) it already holds is refused, so no run
counts twice in its statistics. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import RunConfig, config_fields
from lab.errors import ConfigError, LabError, NotFoundError
from lab.queue import slurm
from lab.queue.actions import job_summary, retry_job
from lab.queue.jobs import Job, JobQueue, iso
from lab.runs import State

GRID_LIMIT = 64  # more jobs than this in one submit asks for --yes
GRID_MAX = 10_000  # never, even with --yes: a typo's grid, not an experiment
NOT_SWEPT = {"seed": "--seeds N repeats each config with N training seeds",
             "study": "--study NAME names the study",
             "level": "repeat --level for several levels"}
# What is not a configuration's identity: its seeds are its repeats, the study its group.
_NOT_CONFIG = ("seed", "study")
COUNTED = ("done", "running", "queued", "failed", "cancelled")


def split_values(text: str) -> list[str]:
    """`1e-3,3e-4` -> ['1e-3', '3e-4']; commas inside brackets stay, so a tuple field sweeps
    as `cnn_channels=[8,16],[16,32]`."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[("
        depth -= char in "])"
        if char == "," and depth <= 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_sweep(items: list[str]) -> dict[str, list[str]]:
    """`--sweep KEY=V1,V2` items as {field: [values as typed]}: each value is coerced by the
    field's type when the grid is built, as `--set` is."""
    fields = config_fields()
    sweep: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--sweep expects KEY=V1,V2,..., got {item!r}")
        if key in NOT_SWEPT:
            raise ConfigError(f"--sweep {key}: not swept here", hint=NOT_SWEPT[key])
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            guess = f": did you mean {close[0]}?" if close else ""
            raise ConfigError(f"--sweep {key}: no such config field{guess}",
                              hint="`lab levels` lists the fields")
        if key in sweep:
            raise ConfigError(f"--sweep {key} is given twice: list its values once, "
                              f"{key}=V1,V2")
        values = split_values(text)
        if any(not v for v in values):
            raise ConfigError(f"--sweep {item!r}: an empty value (values are separated by "
                              "commas)")
        sweep[key] = values
    return sweep


def parse_sweep_text(text: str) -> dict[str, list[str]]:
    """The console's sweep field: `lr=1e-3,1e-4; dropout=0,0.5` (';' or new lines between
    fields), parsed as `--sweep` items are."""
    return parse_sweep([part.strip() for part in text.replace("\n", ";").split(";")
                        if part.strip()])


def grid_size(sweep: dict[str, list[Any]], seeds: int, bases: int = 1) -> int:
    size = bases * seeds
    for values in sweep.values():
        size *= len(values)
    return size


def generated_name(now: float | None = None) -> str:
    """The name of a study submitted without one: its submit time, `study-20261202-0412-07`."""
    return time.strftime("study-%Y%m%d-%H%M-%S", time.localtime(now))


def _point(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def expand_grid(base: RunConfig, sweep: dict[str, list[Any]], seeds: int,
                study: str) -> list[RunConfig]:
    """Every point of the sweep times `seeds` training seeds, in the module's order, each
    config validated as `lab submit` validates one (its fields, its level's model, its
    memory); the first invalid point refuses the whole grid in one line that names it."""
    from lab.levels import check_level_model

    if not 1 <= seeds <= GRID_MAX:
        raise ConfigError(f"--seeds {seeds}: must be between 1 and {GRID_MAX}")
    try:
        base = base.replace(study=study)
    except ConfigError as exc:
        raise ConfigError(f"--study {study!r}: {exc.message.partition(': ')[2]}") from None
    names = list(sweep)
    points = list(itertools.product(*(sweep[n] for n in names)))
    total = len(points) * seeds
    configs = []
    for p, point in enumerate(points):
        values = dict(zip(names, point, strict=True))
        for s in range(seeds):
            try:
                config = base.replace(**values, seed=base.seed + s)
                check_level_model(config)
                config.check_memory()
            except ConfigError as exc:
                where = f" ({_point(values)})" if values else ""
                seed = f", seed {base.seed + s}" if seeds > 1 else ""
                raise ConfigError(f"grid config {p * seeds + s + 1} of {total}{where}{seed}: "
                                  f"{exc.message}; nothing was queued", hint=exc.hint) from None
            configs.append(config)
    return configs


def plan(bases: list[RunConfig], sweep: dict[str, list[Any]], seeds: int, study: str,
         allow_large: bool = False,
         to_allow: str = "add --yes to queue them all") -> list[RunConfig]:
    """The whole study's configs, one grid per base (one per `--level`), before any is
    queued: over GRID_LIMIT jobs only with `allow_large` (`--yes`), never over GRID_MAX, and
    no config twice (`lr=1e-3,0.001` is one value)."""
    size = grid_size(sweep, seeds, len(bases))
    if size > GRID_MAX:
        raise ConfigError(f"this grid is {size:,} jobs, over the most one submit takes "
                          f"({GRID_MAX:,}); nothing was queued")
    if size > GRID_LIMIT and not allow_large:
        raise ConfigError(f"this grid is {size} jobs, over {GRID_LIMIT}: {to_allow}; nothing "
                          "was queued")
    configs = [c for base in bases for c in expand_grid(base, sweep, seeds, study)]
    first: dict[str, int] = {}
    for n, config in enumerate(configs, 1):
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key in first:
            raise ConfigError(f"grid config {n} is the same as grid config {first[key]} (a "
                              "value listed twice?); nothing was queued")
        first[key] = n
    return configs


@dataclass(frozen=True)
class StudySubmit:
    """What a study's submit did: its jobs, and how many jobs the study held before."""

    study: str
    jobs: list[Job]
    had: int

    def describe(self) -> str:
        ids = f"#{self.jobs[0].id}" if len(self.jobs) == 1 else \
            f"#{self.jobs[0].id}-#{self.jobs[-1].id}"
        configs = {_identity(j.config) for j in self.jobs}
        seeds = {j.config.get("seed") for j in self.jobs}
        shape = f"{len(configs)} config{'s' * (len(configs) != 1)} x {len(seeds)} " \
                f"seed{'s' * (len(seeds) != 1)}"
        where = f"added to study {self.study}, which had {self.had} job" \
                f"{'s' * (self.had != 1)}" if self.had else f"new study {self.study}"
        return f"queued {len(self.jobs)} job{'s' * (len(self.jobs) != 1)} ({ids}, {shape}): " \
               f"{where}"


def submit_study(queue: JobQueue, configs: list[RunConfig], priority: int = 0,
                 backend: str = "local", slurm_options: dict[str, Any] | None = None,
                 generated: bool = False) -> StudySubmit:
    """Queue a planned study in ONE transaction (`JobQueue.submit`): every job or, on any
    error (a config the study already holds, a full disk, a lock held too long), none. A
    `generated` name that is taken already (two submits in one second) gets a suffix, `-2`,
    `-3`, ...: nobody asked to add to that study."""
    names = {c.study for c in configs}
    if len(names) != 1 or not configs[0].study:
        raise ValueError("submit_study takes the configs of one named study")
    study = configs[0].study
    had = len(queue.study_jobs(study))
    if generated and had:
        taken = set(queue.studies())
        study = next(f"{study}-{n}" for n in itertools.count(2) if f"{study}-{n}" not in taken)
        configs = [c.replace(study=study) for c in configs]
        had = 0
    jobs = queue.submit(configs, priority=priority, backend=backend,
                        slurm_options=slurm_options)
    return StudySubmit(study, jobs, had)


# ---- what a study holds ------------------------------------------------------------------
def _identity(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _NOT_CONFIG},
                      sort_keys=True)


def _counts(jobs: list[Job]) -> dict[str, int]:
    states = Counter("queued" if j.state == "interrupted" else j.state for j in jobs)
    return {s: states.get(s, 0) for s in COUNTED}


def summaries(jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per study (oldest first): its jobs by state (interrupted ones count as queued:
    a worker takes them again), its configurations, seeds and when it was created."""
    groups: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.id):
        if job.study:
            groups.setdefault(job.study, []).append(job)
    return [{"study": name, "jobs": len(group), **_counts(group),
             "configs": len({_identity(j.config) for j in group}),
             "seeds": len({j.config.get("seed") for j in group}),
             "levels": sorted({j.config.get("level") for j in group}, key=str),
             "created": iso(min(j.created for j in group))}
            for name, group in groups.items()]


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """The config fields (not seed or study) whose values differ between the configs, in the
    config's own field order."""
    return [name for name in config_fields() if name not in _NOT_CONFIG
            and len({json.dumps(c.get(name)) for c in configs}) > 1]


def detail(queue: JobQueue, name: str, runs_dir: Path) -> dict[str, Any]:
    """One study: its summary, the fields that vary, and its jobs grouped by configuration
    (in grid order), each job with its seed, state, run and accuracies."""
    jobs = queue.study_jobs(name)
    if not jobs:
        raise unknown_study(name, queue.studies())
    varying = varying_fields([j.config for j in jobs])
    groups: dict[str, dict[str, Any]] = {}
    for job in jobs:
        group = groups.setdefault(_identity(job.config), {
            "label": job.label, "values": {k: job.config.get(k) for k in varying}, "jobs": []})
        row = job_summary(job, runs_dir)
        group["jobs"].append({k: row[k] for k in (
            "id", "display_state", "run_id", "epoch", "epochs", "val_acc", "test_acc",
            "error")} | {"seed": job.config.get("seed")})
    return {**summaries(jobs)[0], "varying": varying, "groups": list(groups.values())}


# ---- what is done to a study ----------------------------------------------------------
def cancel_study(queue: JobQueue, study: str) -> tuple[list[Job], list[Job]]:
    """`lab cancel --study`: the study's waiting jobs cancelled in one transaction (Slurm's
    pending ones scancelled after), its running jobs left running; returns (cancelled,
    running). Other studies' jobs and loose jobs are not touched."""
    _known_study(queue, study)
    cancelled, running = queue.cancel_waiting(study)
    for job in cancelled:
        if job.backend == "slurm":
            slurm.scancel(job)
    return cancelled, running


def retry_study(queue: JobQueue, study: str, fresh: bool = False) -> list[Job]:
    """`lab retry --study`: each failed or cancelled job of the study queued again (as
    `retry_job`: a Slurm job goes to sbatch again). A job that changed meanwhile is skipped."""
    _known_study(queue, study)
    again = []
    for job in queue.study_jobs(study):
        if job.state in (State.FAILED, State.CANCELLED):
            try:
                again.append(retry_job(queue, job.id, fresh=fresh))
            except ConfigError:  # it was retried or finished by someone else just now
                continue
    return again


def _known_study(queue: JobQueue, study: str) -> None:
    if study not in queue.studies():
        raise unknown_study(study, queue.studies())


def unknown_study(name: str, known: list[str]) -> LabError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    guess = f": did you mean {close[0]}?" if close else ""
    listed = f" (studies: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''})" \
        if known and not close else ""
    return NotFoundError(f"no study {name!r}{guess}{listed}",
                         hint=None if known else "queue one with `lab submit --study NAME`")

"""The jobs-and-runs list, read from the run records and the job queue; no Textual here.

Reading happens in worker threads (only `run_stamp`, a few `stat` calls, runs on the UI thread),
returns plain data, and never raises for one bad run: an unreadable record becomes an `error` on
that run's row, so one corrupt run can never hide the others.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runs import RunDir, list_runs, read_jsonl_counted, summarize
from lab.views.states import look
from lab.views.study import Progress, study_progress

SORTS = ("newest", "state", "accuracy", "level", "name")


@dataclass(frozen=True)
class Row:
    """One line of the jobs-and-runs list: a queued job, a job with its run, or a bare run."""

    key: str  # "job:12" or "run:<run_id>": stable across refreshes
    name: str  # "#12 L1" for a job, "L3 28a4" for a run outside the queue
    state: str
    job_id: int | None = None
    run_id: str | None = None
    level: int | None = None
    model: str = ""
    dataset: str = ""
    epoch: int = 0
    epochs: int | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    created: float | None = None  # seconds since the epoch; newest first
    priority: int = 0
    error: str | None = None  # why the row is failed or corrupt
    warning: str | None = None  # a damaged record the row still shows (a torn metrics line)
    slurm_id: str | None = None  # a Slurm job's id (`lab submit --slurm`)
    slurm_state: str | None = None  # what squeue/sacct said of it at the last refresh
    study: str = ""  # the study the job or run belongs to (its config's `study`); "" for none
    progress: Progress | None = None  # on a study's header row: its members counted

    @property
    def is_header(self) -> bool:
        """A study's header row in the list, not a job or a run."""
        return self.progress is not None

    @property
    def label(self) -> str:
        """The series name in charts: derived from the run id, so its colour never changes."""
        if self.run_id is None:
            return self.name
        return f"L{self.level} {self.run_id[-4:]}" if self.level else f"run {self.run_id[-4:]}"

    def matches(self, text: str) -> bool:
        """Every word of `text` occurs in the row (name, state, data set, level, ids)."""
        hay = " ".join(str(v) for v in (
            self.name, self.state, self.dataset, self.model, self.run_id or "",
            f"l{self.level}" if self.level else "custom", f"#{self.job_id}" if self.job_id else "",
            f"slurm {self.slurm_id} {self.slurm_state or ''}" if self.slurm_id else "",
            self.study,
        )).lower()
        return all(word in hay for word in text.lower().split())


@dataclass(frozen=True)
class Snapshot:
    rows: list[Row]
    workers: list[dict[str, Any]]  # live workers: id, pid, slots, detached
    queue_error: str | None = None


def sort_rows(rows: list[Row], how: str) -> list[Row]:
    """Newest first within every ordering, so equal keys keep a predictable order."""
    newest = sorted(rows, key=lambda r: (-(r.created or 0.0), r.key))
    if how == "state":
        return sorted(newest, key=lambda r: look(r.state).rank)
    if how == "accuracy":
        return sorted(newest, key=lambda r: -(r.test_acc if r.test_acc is not None else -1.0))
    if how == "level":
        return sorted(newest, key=lambda r: r.level or 99)
    if how == "name":
        return sorted(newest, key=lambda r: r.name)
    return newest


def study_header(study: str, members: list[Row]) -> Row:
    """A study's header row: its jobs and runs counted by state, their best and mean test
    accuracy, the newest one's time and the data set they share."""
    datasets = {m.dataset for m in members}
    return Row(key=f"study:{study}", name=study, state="study", study=study,
               progress=study_progress((m.state, m.test_acc) for m in members),
               dataset=datasets.pop() if len(datasets) == 1 else "",
               created=max((m.created for m in members if m.created), default=None))


def with_studies(ordered: list[Row], every: list[Row], collapsed: frozenset[str]) -> list[Row]:
    """The list's rows with each study as a group: a header row where the study's first row
    falls in `ordered`, then its rows from `ordered` (none when the study is collapsed). The
    header counts all of the study's rows in `every`, shown or filtered out. Rows outside a
    study keep their place, so a list without studies is `ordered` itself."""
    members: dict[str, list[Row]] = {}
    for row in every:
        if row.study:
            members.setdefault(row.study, []).append(row)
    shown: dict[str, list[Row]] = {}
    for row in ordered:
        if row.study:
            shown.setdefault(row.study, []).append(row)
    out: list[Row] = []
    for row in ordered:
        if not row.study:
            out.append(row)
        elif row is shown[row.study][0]:
            out.append(study_header(row.study, members.get(row.study) or shown[row.study]))
            if row.study not in collapsed:
                out.extend(shown[row.study])
    return out


def age(seconds: float | None) -> str:
    """Compact age: 45s, 12m, 3h, 5d."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def parse_time(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete events and the number of lines that could not be read (torn or corrupt)."""
    return read_jsonl_counted(path)

def run_stamp(path: Path, job_log: Path | None = None) -> tuple:
    """What changes when a run moves on: sizes and mtimes of its records (cheap to poll)."""
    out: list[Any] = []
    names = ("config.json", "status.json", "metrics.jsonl", "result.json", "gradcam/index.json")
    for p in [path / n for n in names] + ([job_log] if job_log else []):
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


# ---- the list -----------------------------------------------------------------------------
class RowSource:
    """Reads the list, re-reading a run only when its files changed (200 runs stay cheap)."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self._cache: dict[str, tuple[tuple, Row]] = {}
        self._lock = threading.Lock()

    def load(self) -> Snapshot:
        with self._lock:
            runs = {r.id: self._run_row(r) for r in list_runs(self.runs_dir)}
            self._cache = {k: v for k, v in self._cache.items() if k in runs}
        jobs, workers, queue_error = read_queue(self.runs_dir)
        rows: list[Row] = []
        for job in jobs:
            run_row = runs.pop(job["run_id"], None) if job["run_id"] else None
            rows.append(job_row(job, run_row))
        rows.extend(runs.values())
        return Snapshot(rows, workers, queue_error)

    def _run_row(self, run: RunDir) -> Row:
        stamp = run_stamp(run.path)
        cached = self._cache.get(run.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        row = run_row(run)
        self._cache[run.id] = (stamp, row)
        return row


def run_row(run: RunDir) -> Row:
    """A run's row from `lab.runs.summarize`, plus a warning for unreadable metric lines."""
    s = summarize(run)
    level = s.get("level")
    name = f"L{level} {run.id[-4:]}" if level else f"run {run.id[-4:]}"
    if s["state"] == "corrupt":
        return Row(key=f"run:{run.id}", name=name, state="corrupt", run_id=run.id,
                   error=s.get("error"), created=_created_from_id(run.id))
    _, bad = read_events(run.metrics_path)
    warning = f"metrics.jsonl: {bad} unreadable line(s) skipped" if bad else None
    return Row(
        key=f"run:{run.id}", name=name, state=s["state"], run_id=run.id, level=level,
        model=s.get("model") or "", dataset=s.get("dataset") or "", epoch=s.get("epoch") or 0,
        epochs=s.get("epochs"), val_acc=s.get("val_acc"), test_acc=s.get("test_acc"),
        created=parse_time(s.get("created")) or _created_from_id(run.id), error=s.get("error"),
        warning=warning, study=_study(run))


def _study(run: RunDir) -> str:
    """The run's study ("" for none; `summarize` has just read the same config)."""
    try:
        return run.config().study
    except (LabError, OSError):
        return ""


def job_row(job: dict[str, Any], run: Row | None) -> Row:
    """A job's row; its run (when it has one) supplies progress and accuracy."""
    config = job["config"] if isinstance(job.get("config"), dict) else {}
    level = config.get("level")
    state = job["state"]
    if run is not None and run.state == "corrupt":
        state = "corrupt"
    base = Row(key=f"job:{job['id']}", name=f"#{job['id']} {job.get('label') or ''}".strip(),
               state=state, job_id=job["id"], run_id=job.get("run_id"), level=level,
               model=str(config.get("model", "")), dataset=str(config.get("dataset", "")),
               epochs=config.get("epochs"), created=job.get("created"),
               priority=job.get("priority") or 0, error=job.get("error"),
               slurm_id=job.get("slurm_id"), slurm_state=job.get("slurm_state"),
               study=str(config.get("study") or ""))  # a queued job has no run yet
    if run is None:
        return base
    return replace(base, epoch=run.epoch, val_acc=run.val_acc, test_acc=run.test_acc,
                   warning=run.warning, error=base.error or run.error,
                   study=base.study or run.study)


def _created_from_id(run_id: str) -> float | None:
    """Run ids start with their creation time (YYYYmmdd-HHMMSS, local time)."""
    try:
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None


def read_queue(runs_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Jobs and live workers from `runs/lab.db`; a missing database is an empty queue. Slurm
    jobs show Slurm's view (`lab.queue.actions.refresh`: one squeue call, only if there are any)."""
    try:
        from lab.queue import JobQueue
        from lab.queue.actions import refresh
        from lab.queue.slurm import display_state
    except ImportError:  # an engine without the queue: runs only
        return [], [], None
    try:
        queue = JobQueue.open(runs_dir, create=False)
        if queue is None:
            return [], [], None
        with queue:
            found, seen = refresh(queue, queue.jobs(), runs_dir)
            jobs = [{**j.__dict__, "state": display_state(j, seen.get(j.id)),
                     "slurm_state": seen[j.id].state if j.id in seen else None} for j in found]
            workers = [{"id": w.id, "pid": w.pid, "slots": list(w.slots), "detached": w.detached}
                       for w in queue.workers() if w.alive]
        return jobs, workers, None
    except Exception as exc:  # noqa: BLE001 - a broken database must not take the runs with it
        return [], [], f"job queue unreadable: {exc}"

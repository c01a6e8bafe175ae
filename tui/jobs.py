"""The console's calls into the job queue: validate and submit, cancel, retry, start a worker.

Each function is blocking (SQLite with a busy timeout, or a process start) and is called from a
thread worker; each returns a one-line message for the user or raises `LabError` with one.
Validation is the engine's `build_config` and `queueable`, the same calls `lab submit` makes, so
a job the dialog accepts is exactly a job `lab submit` accepts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.errors import LabError, RunFailed

WORKER_START_TIMEOUT_S = 180.0


def build_job_config(level: int, options: dict[str, Any], data_dir: Path) -> Any:
    """The RunConfig `lab submit --level N --epochs ... --data-dir DIR` would queue, its data
    set and weights checked as there; raises the LabError that `lab submit` would print."""
    from lab.levels import build_config
    from lab.queue.actions import queueable

    return queueable(build_config(level, None, options, []), data_dir)


def build_study_configs(level: int, options: dict[str, Any], data_dir: Path, sweep: str,
                        seeds: int, study: str) -> list[Any]:
    """The configs `lab submit --level N ... --sweep ... --seeds N --study NAME` would queue
    (`lab.queue.studies.plan`, then `queueable` once per data set and weights); a blank
    `study` gets a name made from the time, as there."""
    from lab.levels import build_config
    from lab.queue import studies
    from lab.queue.actions import queueable_all

    configs = studies.plan([build_config(level, None, options, [])],
                           studies.parse_sweep_text(sweep), seeds,
                           study or studies.generated_name(),
                           to_allow="`lab submit ... --yes` queues a grid that large")
    return queueable_all(configs, data_dir)


def submit_study(runs_dir: Path, configs: list[Any], priority: int,
                 generated: bool = False) -> tuple[str, bool]:
    """Queue a study's configs in one transaction; returns what was done, in a line, and
    whether a worker is alive to run them. `generated`: the name was made from the time."""
    from lab.queue import JobQueue, studies

    with JobQueue.open(runs_dir) as queue:
        done = studies.submit_study(queue, configs, priority=priority, generated=generated)
        alive = any(w.alive for w in queue.workers())
    return done.describe(), alive


def submit(runs_dir: Path, config: Any, priority: int) -> tuple[int, bool]:
    """Queue one job; returns its id and whether a worker is alive to run it."""
    from lab.queue import JobQueue

    with JobQueue.open(runs_dir) as queue:
        job = queue.submit([config], priority=priority)[0]
        alive = any(w.alive for w in queue.workers())
    return job.id, alive


def cancel(runs_dir: Path, job_id: int) -> str:
    """`lab cancel`'s engine call: a Slurm job is scancelled as well."""
    from lab.queue.actions import cancel_job

    with _open(runs_dir) as queue:
        job = cancel_job(queue, job_id)
    if job.state == "cancelled":
        return f"job {job.id} cancelled" + (f"; run {job.run_id} kept" if job.run_id else "")
    return f"job {job.id} is cancelling: it stops at its next batch"


def retry(runs_dir: Path, job_id: int) -> str:
    """`lab retry`'s engine call: a Slurm job is handed to sbatch again."""
    from lab.queue.actions import retry_job

    with _open(runs_dir) as queue:
        job = retry_job(queue, job_id)
    if job.state == "failed":
        raise RunFailed(f"job {job.id}: {job.error}")
    how = f"resumes run {job.run_id}" if job.run_id else "starts a new run"
    where = f" (Slurm job {job.slurm_id})" if job.slurm_id else ""
    return f"job {job.id} queued again{where}: its next attempt {how}"


def workers_alive(runs_dir: Path) -> bool:
    from lab.queue import JobQueue

    queue = JobQueue.open(runs_dir, create=False)
    if queue is None:
        return False
    with queue:
        return any(w.alive for w in queue.workers())


def start_worker(runs_dir: Path, data_dir: Path) -> str:
    """`lab worker --detach` in a child process: the worker lives in its own session, so
    quitting the console (or losing the SSH link) never stops it or its jobs."""
    cmd = [sys.executable, "-m", "lab", "worker", "--detach", "--runs-dir", str(runs_dir),
           "--data-dir", str(data_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=WORKER_START_TIMEOUT_S,
                              env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    except subprocess.TimeoutExpired:
        raise RunFailed("the worker did not start in time",
                        hint=f"see {Path(runs_dir) / 'workers'}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RunFailed(last.removeprefix("lab: error: "))
    found = re.search(r"pid (\d+)", done.stdout)
    return f"worker started in the background (pid {found.group(1)})" if found else \
        "worker started in the background"


def _open(runs_dir: Path) -> Any:
    from lab.queue import JobQueue

    queue = JobQueue.open(runs_dir, create=False)
    if queue is None:
        raise LabError(f"no job queue in {runs_dir}")
    return queue

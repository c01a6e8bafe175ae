"""What clients show about jobs and workers: queue rows joined with their runs' progress.

The CLI (`lab queue`, `lab worker status`) and the TUI's jobs panel list the same rows in the
same order, so both build them here from the queue and the run records, read-only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, NotFoundError
from lab.queue import CLAIMABLE, Job, WorkerRow, host_name
from lab.runs import RunDir, pid_alive, validate_run_ref


def display_order(jobs: list[Job], recent: int | None = 10) -> list[Job]:
    """Running jobs, then waiting ones in the order workers will take them, then finished ones
    newest first (only the `recent` latest of those; None for all)."""
    running = [j for j in jobs if j.state == "running"]
    waiting = [j for j in jobs if j.state in CLAIMABLE]  # `jobs` comes in claim order
    done = sorted((j for j in jobs if j.state not in ("running", *CLAIMABLE)),
                  key=lambda j: (j.finished or j.created, j.id), reverse=True)
    return running + waiting + (done if recent is None else done[:recent])


def job_summary(job: Job, runs_dir: Path) -> dict[str, Any]:
    """The job as JSON plus its run's progress (epoch, accuracies) when it has a run."""
    row = job.to_dict()
    config = job.config
    row.update(display_state=job.display_state, level=config.get("level"),
               dataset=config.get("dataset"), epochs=config.get("epochs"), epoch=0,
               val_acc=None, test_acc=None, run_state=None)
    if (job.state == "running" and job.host == host_name() and not pid_alive(job.pid)
            and not pid_alive(job.child_pid)):  # until a worker requeues it
        row.update(display_state="interrupted", error="its worker died; a worker resumes it")
    if job.run_id:
        try:
            run = RunDir(Path(runs_dir) / validate_run_ref(job.run_id))
            status = run.status()
            result = run.result() or {}
        except Exception:  # noqa: BLE001 - a missing or corrupt run marks this row only
            row["run_state"] = "missing"
            return row
        row.update(epoch=int(status.get("epoch") or 0), run_state=run.live_state(),
                   test_acc=result.get("test_acc"))
        epochs = [e for e in run.events() if e.get("event") == "epoch"]
        if epochs:
            row["val_acc"] = epochs[-1].get("val_acc")
    return row


def worker_summary(worker: WorkerRow, jobs: list[Job]) -> dict[str, Any]:
    """A worker as `lab worker status` shows it: running, stopping, unresponsive or dead."""
    if not worker.alive:
        state = "dead"
    elif worker.lease_until < time.time():
        state = "unresponsive"
    else:
        state = ("running", "stopping", "stopping now")[min(worker.stop, 2)]
    mine = [j for j in jobs if j.worker == worker.id and j.state == "running"]
    return {**worker.to_dict(), "state": state,
            "heartbeat_age_s": round(time.time() - worker.heartbeat, 1),
            "jobs": [{"id": j.id, "gpu": j.gpu, "label": j.label, "run_id": j.run_id}
                     for j in mine]}


def queueable(config: Any) -> Any:
    """A config fit to wait in a queue: paths made absolute (a worker has its own working
    directory) and checked now, and no pinned GPU (the worker assigns one per job)."""
    if config.device.startswith("cuda:"):
        raise ConfigError(f"device={config.device!r}: a queued job runs on the GPU its worker "
                          "gives it", hint="use --device auto or cuda; choose GPUs with "
                          "`lab worker --gpus N`")
    changes: dict[str, str] = {}
    if config.weights not in ("imagenet", "none"):
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise NotFoundError(f"weights file {config.weights} does not exist")
        changes["weights"] = str(path.resolve())
    if config.dataset.startswith("imagefolder:"):
        path = Path(config.dataset.removeprefix("imagefolder:")).expanduser()
        if not path.exists():
            raise NotFoundError(f"no image folder at {path}")
        changes["dataset"] = f"imagefolder:{path.resolve()}"
    return config.replace(**changes) if changes else config

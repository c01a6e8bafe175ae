"""What clients show about jobs and workers, and the job actions they share.

The CLI (`lab queue`, `lab worker status`) and the TUI's jobs panel list the same rows in the
same order, so both build them here from the queue, the run records and, for Slurm jobs, one
`squeue` call (`refresh`). Cancel and retry live here too, so `lab cancel` and the console's
cancel reach Slurm (scancel, sbatch) the same way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, DataError, LabError, NotFoundError
from lab.queue import slurm
from lab.queue.jobs import CLAIMABLE, Job, JobQueue, WorkerRow, host_name
from lab.queue.slurm import SlurmState
from lab.runs import RunDir, State, pid_alive, validate_run_ref


def refresh(queue: JobQueue, jobs: list[Job],
            runs_dir: Path) -> tuple[list[Job], dict[int, SlurmState]]:
    """The jobs with Slurm's view applied, and Slurm's state per job id: one squeue call per
    listing, none at all when no job is a Slurm job."""
    if not any(j.backend == "slurm" for j in jobs):
        return jobs, {}
    return slurm.reconcile(queue, jobs, runs_dir)


def cancel_job(queue: JobQueue, job_id: int) -> Job:
    """Cancel as `lab cancel` does: the queue records it (a waiting job is cancelled at once, a
    running one is asked to stop at its next batch); a Slurm job is then scancelled, and its
    process takes the SIGTERM as the cancel it finds recorded."""
    job = queue.cancel(job_id)
    if job.backend == "slurm":
        slurm.scancel(job)
        job = queue.get(job_id)
    return job


def retry_job(queue: JobQueue, job_id: int, fresh: bool = False) -> Job:
    """Queue a job again; a Slurm job is handed to sbatch again (a new Slurm id)."""
    if queue.get(job_id).backend == "slurm":
        slurm.command("sbatch")  # before the job is touched: without sbatch it stays as it is
        job = queue.retry(job_id, fresh=fresh)
        return slurm.sbatch_job(queue, job, queue.path.parent)
    return queue.retry(job_id, fresh=fresh)


def display_order(jobs: list[Job], recent: int | None = 10) -> list[Job]:
    """Running jobs, then waiting ones in the order workers will take them, then finished ones
    newest first (only the `recent` latest of those; None for all)."""
    running = [j for j in jobs if j.state == State.RUNNING]
    waiting = [j for j in jobs if j.state in CLAIMABLE]  # `jobs` comes in claim order
    done = sorted((j for j in jobs if j.state not in (State.RUNNING, *CLAIMABLE)),
                  key=lambda j: (j.finished or j.created, j.id), reverse=True)
    return running + waiting + (done if recent is None else done[:recent])


def job_summary(job: Job, runs_dir: Path, seen: SlurmState | None = None) -> dict[str, Any]:
    """The job as JSON plus its run's progress (epoch, accuracies) when it has a run, and for
    a Slurm job what Slurm says (`seen`, from `refresh`)."""
    row = job.to_dict()
    config = job.config
    row.update(display_state=slurm.display_state(job, seen), level=config.get("level"),
               dataset=config.get("dataset"), epochs=config.get("epochs"), epoch=0,
               val_acc=None, test_acc=None, run_state=None,
               slurm_state=seen.state if seen else None)
    if job.backend == "slurm":  # how often it was requeued after a time limit or preemption
        row.update(requeues=len(slurm.requeue_history(job)),
                   max_requeues=slurm.max_requeues(job))
    if (job.backend == "local" and job.state == State.RUNNING and job.host == host_name()
            and not pid_alive(job.pid) and not pid_alive(job.child_pid)):  # until requeued
        row.update(display_state=State.INTERRUPTED, error="its worker died; a worker resumes it")
    if job.run_id:
        try:
            run = RunDir(Path(runs_dir) / validate_run_ref(job.run_id))
            status = run.status()
            result = run.result() or {}
        except DataError as exc:  # a corrupt record marks this row only
            row.update(run_state="corrupt", run_error=str(exc))
            return row
        except (LabError, OSError):  # its run directory is gone
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
    mine = [j for j in jobs if j.worker == worker.id and j.state == State.RUNNING]
    return {**worker.to_dict(), "state": state,
            "heartbeat_age_s": round(time.time() - worker.heartbeat, 1),
            "jobs": [{"id": j.id, "gpu": j.gpu, "label": j.label, "run_id": j.run_id}
                     for j in mine]}


def queueable(config: Any, data_dir: Path | None = None, check: bool = True) -> Any:
    """A config fit to wait in a queue: paths made absolute (a worker has its own working
    directory), no pinned GPU (the worker assigns one per job), and, with `check`, what it
    needs there now (`checks.check_submittable`: data set, weights file, ImageNet weights
    offline). `check=False` (`--no-check`) is for data that exists only on the worker's machine:
    paths are still made absolute, nothing is looked up. The one check `lab submit` and the
    console's new-job dialog share."""
    if config.device.startswith("cuda:"):
        raise ConfigError(f"device={config.device!r}: a queued job runs on the GPU its worker "
                          "gives it", hint="use --device auto or cuda; choose GPUs with "
                          "`lab worker --gpus N`")
    changes: dict[str, str] = {}
    if config.weights not in ("imagenet", "none"):
        path = Path(config.weights).expanduser()
        if check and not path.is_file():
            raise NotFoundError(f"weights file {config.weights} does not exist",
                                hint="--no-check queues it anyway, for a file that exists only "
                                     "on the worker's machine")
        changes["weights"] = str(path.resolve())
    if config.dataset.startswith("imagefolder:"):
        path = Path(config.dataset.removeprefix("imagefolder:")).expanduser()
        changes["dataset"] = f"imagefolder:{path.resolve()}"
    config = config.replace(**changes) if changes else config
    if check:
        from lab.queue.checks import check_submittable  # lazily: it imports lab.data

        check_submittable(config, data_dir)
    return config


def queueable_all(configs: list[Any], data_dir: Path | None = None,
                  check: bool = True) -> list[Any]:
    """`queueable` for many configs (a study's grid), its checks run once per distinct data
    set, weights, model and device: a grid of 64 lr values looks at the data cache once."""
    done: dict[tuple[str, str, str, str], Any] = {}
    result = []
    for config in configs:
        key = (config.dataset, config.weights, config.model, config.device)
        if key not in done:
            done[key] = queueable(config, data_dir, check)
            result.append(done[key])
            continue
        first = done[key]
        changes = {k: getattr(first, k) for k in ("dataset", "weights")
                   if getattr(first, k) != getattr(config, k)}
        result.append(config.replace(**changes) if changes else config)
    return result

"""The body of a job process (`python -m lab.entry.jobrun JOB --attempt N`), one per job.

A fresh interpreter per job, so `CUDA_VISIBLE_DEVICES` (set by the worker) is in place before
torch starts, and an out-of-memory error, a segfault or a leak ends this process, not the
worker. It trains through the engine like `lab run` (first attempt) or `lab resume` (a job that
already has a run: an earlier attempt was interrupted, or `lab retry` kept its run), prints
progress lines to its log (`runs/jobs/<id>.log`), and records the outcome in the queue itself.

It stops cleanly, between batches, when the job is cancelled (the queue is read at most every
0.5 s), when its worker disappears (its parent pid changes: a worker killed with -9 leaves no
job running unsupervised), or on SIGTERM/SIGINT; it writes a checkpoint of where it stopped,
mid-epoch included, and the run is then `cancelled` or `interrupted` (a signal while a cancel
is pending is that cancel: `lab cancel` of a Slurm job records the cancel, then scancel sends
SIGTERM).

`--slurm` is the same process started by a Slurm batch script (`lab.queue.slurm`): there is no
worker, so it claims the job itself (worker `slurm:<SLURM_JOB_ID>`, its own pid) and has no
parent to watch; Slurm ends it on scancel, a time limit or a node failure. SIGUSR1, which the
script asks Slurm to send a lead before the time limit, stops it like SIGTERM and then makes
it submit its own next Slurm job to resume the run (`lab.queue.slurm.requeue_itself`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from lab.core.stopping import SignalStop
from lab.errors import LabError, NotFoundError
from lab.queue.jobs import Job, JobQueue
from lab.runs import RunDir, State, validate_run_ref

CANCEL_POLL_S = 0.5
SLURM_LEASE_S = 0.0  # no heartbeat under Slurm: Slurm, not a lease, says whether it lives


class StopCheck:
    """The `should_stop` callback given to `fit`; remembers why it said stop."""

    def __init__(self, queue: JobQueue, job_id: int, parent: int | None,
                 interval: float = CANCEL_POLL_S, signals: SignalStop | None = None) -> None:
        self.queue, self.job_id, self.parent, self.interval = queue, job_id, parent, interval
        self.signals = signals
        self.reason: str | None = None
        self._next = 0.0

    def __call__(self) -> bool:
        if self.signals is not None and self.signals():
            self.reason = "cancel" if self.queue.cancel_requested(self.job_id) \
                else f"stopped by {self.signals.signal}"
            return True
        if self.parent is not None and os.getppid() != self.parent:
            self.reason = "its worker died"
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        if self.queue.cancel_requested(self.job_id):
            self.reason = "cancel"
            return True
        return False


class TimeLimitSignal:
    """SIGUSR1, sent by Slurm `--signal=B:USR1@LEAD` seconds before a job's time limit: noted,
    then turned into the SIGTERM every job already stops on (the current step finishes and is
    checkpointed; in a data-parallel job torchrun's agent passes SIGTERM to the ranks), so the
    job ends as `interrupted` would and `run_job` then requeues it. A context manager (main
    thread only) that restores the old handler."""

    def __init__(self) -> None:
        self.seen = False
        self._saved: Any = None

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.seen:
            self.seen = True
            os.kill(os.getpid(), signal.SIGTERM)

    def __enter__(self) -> TimeLimitSignal:
        self._saved = signal.signal(signal.SIGUSR1, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGUSR1, self._saved)


def run_job(queue: JobQueue, job: Job, runs_dir: Path, data_dir: Path,
            signals: SignalStop | None = None, slurm_id: str | None = None,
            time_limit: TimeLimitSignal | None = None) -> str:
    """Train `job` to its end and record the outcome; returns the job's final state (`queued`
    when it requeued itself). With a `slurm_id` nobody supervises it but Slurm (no parent to
    watch), and `time_limit` says whether it was stopped for its time limit."""
    from lab.launch.run import resume_run, start_run
    from lab.views.progress import ProgressPrinter

    attempt = job.attempts
    stop = StopCheck(queue, job.id, parent=None if slurm_id else os.getppid(), signals=signals)
    run: RunDir | None = None

    def created(new: RunDir) -> None:
        nonlocal run
        run = new
        queue.set_run(job.id, attempt, new.id)
        new.update_status(job=job.id, **({"slurm_job": slurm_id} if slurm_id else {}))

    try:
        config = job.run_config()
        with ProgressPrinter(None, f"job {job.id} {config.label}", rich_bar=False) as progress:
            if job.run_id:
                run = RunDir(Path(runs_dir) / validate_run_ref(job.run_id))
                if not run.config_path.exists():
                    raise NotFoundError(f"run {job.run_id} of job {job.id} no longer exists",
                                        hint=f"`lab retry {job.id} --fresh` starts a new run")
                if run.live_state() != State.DONE:  # done: it finished just before a crash
                    print(f"job {job.id}: attempt {attempt} resumes run {run.id}", flush=True)
                    resume_run(run, data_dir, emit=progress, should_stop=stop,
                               progress="plain", job=job.id)
            else:
                start_run(config, runs_dir, data_dir, emit=progress, on_created=created,
                          should_stop=stop, progress="plain", job=job.id)
    except KeyboardInterrupt:
        if stop.reason is None and queue.cancel_requested(job.id):
            stop.reason = "cancel"  # a data-parallel job: its rank 0 saw the cancel
        if stop.reason != "cancel" and slurm_id and time_limit is not None and time_limit.seen:
            from lab.queue.slurm import requeue_itself

            state = requeue_itself(queue, job, runs_dir)
            if state is not None:
                return state
            stop.reason = "cancel" if queue.cancel_requested(job.id) else stop.reason
        if stop.reason == "cancel":
            if run is not None:
                run.update_status(state=State.CANCELLED, error="cancelled (lab cancel)")
            queue.finish(job.id, attempt, State.CANCELLED)
            return State.CANCELLED
        reason = stop.reason or "stopped by a signal"
        queue.finish(job.id, attempt, State.INTERRUPTED, error=f"interrupted: {reason}")
        return State.INTERRUPTED
    except LabError as exc:
        print(f"job {job.id} failed: {exc}", file=sys.stderr, flush=True)
        queue.finish(job.id, attempt, State.FAILED, error=str(exc))
        return State.FAILED
    except Exception as exc:  # noqa: BLE001 - any failure of the run is the job's outcome
        traceback.print_exc()
        queue.finish(job.id, attempt, State.FAILED, error=f"{type(exc).__name__}: {exc}")
        return State.FAILED
    queue.finish(job.id, attempt, State.DONE)
    return State.DONE


def claim_for_slurm(queue: JobQueue, job_id: int) -> tuple[Job | None, int]:
    """Claim `job_id` for this Slurm job; (None, exit code) when it is not ours to run: it
    was cancelled before it started (exit 0: nothing failed), or another Slurm job owns it."""
    slurm_id = os.environ.get("SLURM_JOB_ID") or "?"
    job = queue.get(job_id)
    if job.backend != "slurm" or job.slurm_id not in (None, slurm_id):
        print(f"job {job_id}: not ours to run (backend {job.backend}, Slurm job "
              f"{job.slurm_id}, we are {slurm_id})", file=sys.stderr, flush=True)
        return None, 1
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or "cpu"
    claimed = queue.claim(f"slurm:{slurm_id}", os.getpid(), gpu, SLURM_LEASE_S,
                          job_id=job_id, backend="slurm")
    if claimed is None:
        job = queue.get(job_id)
        print(f"job {job_id}: {job.state}, nothing to run", file=sys.stderr, flush=True)
        return None, 0 if job.state == State.CANCELLED else 1
    if claimed.slurm_id is None and slurm_id != "?":  # started before sbatch's id was stored
        queue.set_slurm_id(job_id, slurm_id)
        claimed = queue.get(job_id)
    resumed = f", resuming run {claimed.run_id}" if claimed.run_id else ""
    print(f"job {job_id}: attempt {claimed.attempts} on {gpu}{resumed}", flush=True)
    return claimed, 0


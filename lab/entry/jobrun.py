"""`python -m lab.entry.jobrun JOB --attempt N` (from a worker) or `JOB --slurm` (from sbatch).

Argument parsing and the exit code only; what a job does is `lab.queue.jobrun.run_job`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lab.core.stopping import SignalStop
from lab.queue.jobrun import TimeLimitSignal, claim_for_slurm, run_job
from lab.queue.jobs import JobQueue
from lab.runs import State


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.entry.jobrun")
    parser.add_argument("job", type=int)
    parser.add_argument("--attempt", type=int, help="the attempt its worker claimed")
    parser.add_argument("--slurm", action="store_true",
                        help="started by Slurm: claim the job itself (SLURM_JOB_ID)")
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    if args.attempt is None and not args.slurm:
        parser.error("--attempt is required (or --slurm)")
    if args.data_dir is None:
        from lab.data import default_data_dir

        args.data_dir = default_data_dir()
    # Signals stop the job after its current step, with a checkpoint; repeats are ignored.
    with SignalStop(escalate=False, announce=False) as signals, \
            JobQueue.open(args.runs_dir) as queue:
        if args.slurm:  # SIGUSR1: the time limit is near (the script asks Slurm for it)
            with TimeLimitSignal() as time_limit:
                job, code = claim_for_slurm(queue, args.job)
                if job is None:
                    return code
                state = run_job(queue, job, args.runs_dir, args.data_dir, signals,
                                slurm_id=os.environ.get("SLURM_JOB_ID") or "?",
                                time_limit=time_limit)
        else:
            job = queue.get(args.job)
            # Only the attempt our worker claimed: a leftover from an earlier one must not run.
            if job.state != State.RUNNING or job.attempts != args.attempt or \
                    job.pid != os.getppid():
                print(f"job {job.id}: attempt {args.attempt} is not ours to run "
                      f"(state {job.state}, attempt {job.attempts})", file=sys.stderr)
                return 1
            state = run_job(queue, job, args.runs_dir, args.data_dir, signals)
    # queued: it stopped for its time limit and requeued itself; resumable, as interrupted
    return {State.DONE: 0, State.CANCELLED: 0, State.INTERRUPTED: 130,
            State.QUEUED: 130}.get(state, 1)


if __name__ == "__main__":
    sys.exit(main())

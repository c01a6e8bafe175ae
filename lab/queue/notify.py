"""`lab worker --on-end CMD`: a user's command run each time one of the worker's jobs ends.

Like pueue's callback: the job's outcome reaches notify-send, ntfy, mail or a script through
environment variables, never through a shell string built from job data (a label or an error
message cannot inject anything). The command runs in the background, in its own session, so a
slow or hanging one never holds up the worker; it is killed after `ON_END_TIMEOUT_S`. Whatever
it does (fails, is not found, is killed) is logged in one line and never changes the job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.queue.jobs import Job, job_log_path
from lab.runs import read_json

ON_END_TIMEOUT_S = 300.0  # a notification that takes longer is stopped
MAX_COMMAND = 4096


def end_environment(job: Job, runs_dir: Path) -> dict[str, str]:
    """What the command learns about the job that ended: LAB_JOB_ID, LAB_JOB_STATE,
    LAB_JOB_LABEL, LAB_JOB_ERROR, LAB_JOB_LOG, LAB_RUN_ID, LAB_RUN_DIR, LAB_TEST_ACC (a
    fraction, empty unless done), LAB_STUDY (empty outside a study)."""
    run_dir = Path(runs_dir) / job.run_id if job.run_id else None
    accuracy = ""
    if run_dir is not None and job.state == "done":
        with contextlib.suppress(Exception):  # a missing or torn result: no figure, no error
            value = read_json(run_dir / "result.json").get("test_acc")
            if isinstance(value, (int, float)):
                accuracy = f"{value:.6f}"
    return {
        "LAB_JOB_ID": str(job.id), "LAB_JOB_STATE": job.state, "LAB_JOB_LABEL": job.label,
        "LAB_JOB_ERROR": job.error or "", "LAB_JOB_LOG": str(job_log_path(runs_dir, job.id)),
        "LAB_RUN_ID": job.run_id or "", "LAB_RUN_DIR": str(run_dir) if run_dir else "",
        "LAB_TEST_ACC": accuracy, "LAB_STUDY": str(job.config.get("study") or ""),
    }


@dataclass
class _Pending:
    job_id: int
    proc: subprocess.Popen[Any]
    deadline: float


class EndHooks:
    """The on-end commands a worker has started and not yet seen finish."""

    def __init__(self, command: str | None, runs_dir: Path, say: Callable[[str], None],
                 timeout: float = ON_END_TIMEOUT_S) -> None:
        self.command = command or None
        self.runs_dir, self.say, self.timeout = Path(runs_dir), say, timeout
        self.pending: list[_Pending] = []

    @property
    def pids(self) -> set[int]:
        return {p.proc.pid for p in self.pending}

    def job_ended(self, job: Job) -> None:
        """Start the command for `job` (its final state already recorded)."""
        if self.command is None:
            return
        env = {**os.environ, **end_environment(job, self.runs_dir)}
        try:
            proc = subprocess.Popen(self.command, shell=True, env=env, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            self.say(f"job {job.id}: on-end command could not start: {exc}")
            return
        self.pending.append(_Pending(job.id, proc, time.monotonic() + self.timeout))

    def poll(self) -> None:
        """Log the commands that ended; stop the ones past their time."""
        now = time.monotonic()
        for entry in list(self.pending):
            code = entry.proc.poll()
            if code is None and now >= entry.deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry.proc.pid, signal.SIGKILL)
                code = entry.proc.wait()
                self.say(f"job {entry.job_id}: on-end command stopped after "
                         f"{self.timeout:g} s")
                self.pending.remove(entry)
                continue
            if code is None:
                continue
            self.pending.remove(entry)
            if code == 127:
                self.say(f"job {entry.job_id}: on-end command not found (exit 127)")
            elif code != 0:
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                self.say(f"job {entry.job_id}: on-end command {how}")

    def drain(self, limit: float | None = None) -> None:
        """Wait for the pending commands (the worker is exiting), at most `limit` seconds
        more than their own deadlines allow."""
        end = time.monotonic() + (self.timeout if limit is None else limit)
        while self.pending and time.monotonic() < end:
            self.poll()
            time.sleep(0.05)
        for entry in self.pending:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(entry.proc.pid, signal.SIGKILL)
            entry.proc.wait()
            self.say(f"job {entry.job_id}: on-end command stopped: the worker exits")
        self.pending.clear()

"""Helpers for the queue and worker tests: the CLI in subprocesses, workers that are always
cleaned up, and waiting on a condition (with a timeout) instead of sleeping."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from lab.queue import JobQueue
from lab.runs import pid_alive

T = TypeVar("T")

# Level 3, shrunk: a job takes a few seconds on a CPU, most of it starting the interpreter.
TINY = ["--level", "3", "--dataset", "digits", "--image-size", "16", "--epochs", "2",
        "--set", "cnn_channels=8,16,16,32", "--set", "cnn_hidden=32", "--set", "gradcam=0",
        "--set", "lr=3e-3", "--device", "cpu"]
# Many short batches with a step event each: long enough to act on mid-epoch.
SLOW = ["--level", "3", "--dataset", "digits", "--image-size", "32", "--batch-size", "8",
        "--set", "cnn_channels=8,16,16,32", "--set", "cnn_hidden=32", "--set", "gradcam=0",
        "--set", "log_every=1", "--device", "cpu"]
# Two workers share two cores in some tests: one thread each keeps them from thrashing.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "120"}


def env() -> dict[str, str]:
    return {**os.environ, **ENV}


def lab(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=env(), timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def lab_json(*args: str) -> Any:
    return json.loads(lab(*args, "--json", check=True).stdout)


def wait_for(what: str, probe: Callable[[], T], timeout: float = 180.0,
             every: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def job(runs: Path, job_id: int) -> Any:
    with JobQueue.open(runs) as queue:
        return queue.get(job_id)


def submit(runs: Path, *args: str) -> list[int]:
    out = lab("submit", *args, "-q", "--runs-dir", str(runs), check=True).stdout
    return [int(x) for x in out.split()]


class Processes:
    """Every process group a test starts, killed at teardown whatever happened."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.children: list[subprocess.Popen] = []
        self.adopted: list[int] = []

    def worker(self, runs: Path, *args: str, poll: str = "0.1",
               heartbeat: str = "0.5") -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab", "worker", "--gpus", "cpu", "--poll", poll,
             "--heartbeat", heartbeat, "--runs-dir", str(runs), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
            start_new_session=True)  # its own group: it and its job processes die together
        self.groups.append(proc.pid)
        self.children.append(proc)
        return proc

    def adopt(self, pid: int) -> None:
        """A detached worker: the session leader of its own group (not our child)."""
        self.adopted.append(pid)

    def kill_all(self) -> None:
        for pid in self.adopted:  # only while it is still that worker, never a reused pid
            with contextlib.suppress(OSError):
                if b"lab" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self.groups.append(pid)
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in self.children:
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.kill_all()


def gone(pid: int) -> bool:
    return not pid_alive(pid)

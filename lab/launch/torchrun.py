"""`lab run --nproc N`: start N ranks on this machine with torchrun's own agent and wait.

The ranks are started by module name (`python -m lab.entry.rank`), so this launcher never
imports what they run. When a rank dies its error is recorded in the run's status: the first
failure is the root cause, not the peers that merely lost their connection.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from lab.core.stopping import Stopped
from lab.errors import RunFailed
from lab.runs import RunDir, State, now_iso

RANK_MODULE = "lab.entry.rank"
STOPPED_EXIT = 130  # a rank that stopped on request (signal, cancel): the run is resumable


def launch(run: RunDir, data_dir: Path, nproc: int, resume: bool, quiet: bool = False,
           plain: bool = False, job: int | None = None) -> dict[str, Any]:
    """Start `nproc` ranks on this machine with torchrun's agent and wait for them.

    A rank that stopped on request makes this raise `Stopped` (the run is interrupted and
    resumable); any other failure is recorded in the run's status as `rank R: error` (the
    first rank to fail) and raised as RunFailed. Returns the result rank 0 saved."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          run_id=f"lab-{run.id}", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    args = ["-m", RANK_MODULE, str(run.path), "--data-dir", str(data_dir)]
    args += ["--resume"] * resume + ["--quiet"] * quiet + ["--plain"] * plain
    args += ["--job", str(job)] if job is not None else []
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)(*args)
    except SignalException:
        # SIGTERM or Ctrl-C here: the agent passed it on, and the ranks stopped at their next
        # logging point with a checkpoint (rank 0 marked the run interrupted)
        raise Stopped from None
    except ChildFailedError as exc:
        rank, failure = _root_cause(exc.failures)
        if any(f.exitcode == STOPPED_EXIT for f in exc.failures.values()):
            raise Stopped from None
        message = _failure_text(failure)
        run.update_status(state=State.FAILED, error=f"rank {rank}: {message}", finished=now_iso())
        raise RunFailed(f"rank {rank} of {nproc} failed: {message}",
                        hint=f"the last checkpoint is intact: `lab resume {run.id}`") from None
    result = run.result()
    if result is None:
        raise RunFailed(f"the ranks of run {run.id} ended without a result")
    return result


def _root_cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that failed first. When one fails the agent sends SIGTERM to the others, so a
    rank ended by SIGTERM is a consequence unless nothing else failed."""
    causes = {r: f for r, f in failures.items() if f.exitcode != -signal.SIGTERM} or failures
    return min(causes.items(), key=lambda rf: (rf[1].timestamp, rf[0]))


def _failure_text(failure: Any) -> str:
    """The rank's own error (from the error file `record` wrote) or how its process ended."""
    data = getattr(failure, "error_file_data", None) or {}
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):
        message = message.get("message")
    if isinstance(message, str) and message.strip() and message.strip() != "<NONE>":
        text = " ".join(message.split())
        for name in ("RunFailed", "DataError", "ConfigError", "NotFoundError", "StorageError"):
            text = text.removeprefix(f"{name}: ")
        return text
    if failure.exitcode < 0:  # no error file: the process was killed
        return f"killed by {failure.signal_name()} (exit code {failure.exitcode})"
    return f"exited with code {failure.exitcode} without an error message"

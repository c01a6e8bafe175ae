"""Data-parallel training with PyTorch's own machinery: torchrun's elastic agent starts the
ranks, `torch.distributed` (NCCL on GPUs, gloo on the CPU) connects them, DDP averages the
gradients. The engine only reads the standard environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT, or torchrun's rendezvous), so `lab run --nproc N` on one machine,
`torchrun --nnodes ... -m lab run ...` across machines and `srun` under Slurm all work alike.

Only rank 0 writes records, checkpoints and Grad-CAM. `lab run --nproc N` (and a queued job
with `nproc` > 1) is a launcher: it creates the run, starts the ranks through
`torch.distributed.launcher.elastic_launch` (the engine of torchrun) and, when a rank dies,
records that rank's error in the run's status: the first failure is the root cause.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError, RunFailed
from lab.runs import RunDir, now_iso

PEER_GRACE_S = 3.0
STOPPED_EXIT = 130  # a rank that stopped on request (signal, cancel): the run is resumable


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; `Dist.single()` when not distributed."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @staticmethod
    def single() -> Dist:
        return Dist()


def from_env() -> Dist | None:
    """The rank torchrun (or srun, through torchrun) started us as; None outside a launcher."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not below WORLD_SIZE={world}")
    return Dist(rank, world, local)


def init(dist: Dist, device_spec: str) -> str:
    """Join the process group and pick this rank's device; returns the device spec to train on."""
    import torch
    import torch.distributed as td

    cuda = device_spec != "cpu" and torch.cuda.is_available()
    if cuda:
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(dist.local_rank)
    elif device_spec.startswith("cuda"):
        raise ConfigError(f"device {device_spec!r} requested but CUDA is not available")
    else:
        device = "cpu"
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=10),
                              device_id=torch.device(device) if cuda else None)
    return device


def shutdown() -> None:
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


# ---- collectives the loop needs --------------------------------------------------------------
def all_sum(dist: Dist, *values: Any) -> list[Any]:
    """Sum tensors (or numbers) over the ranks; returns them in the same order."""
    import torch
    import torch.distributed as td

    if not dist.active:
        return list(values)
    out = []
    for v in values:
        t = v.clone() if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=torch.float64)
        if not isinstance(v, torch.Tensor):
            t = t.to(_collective_device())
        td.all_reduce(t, op=td.ReduceOp.SUM)
        out.append(t if isinstance(v, torch.Tensor) else t.item())
    return out


def any_rank(dist: Dist, flag: bool) -> bool:
    """True on every rank when it is true on one: all stop at the same step, or none does."""
    import torch
    import torch.distributed as td

    if not dist.active:
        return flag
    t = torch.tensor([1 if flag else 0], device=_collective_device())
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(dist: Dist, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    import torch.distributed as td

    if not dist.active:
        return [obj]
    out: list[Any] = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def _collective_device() -> str:
    import torch
    import torch.distributed as td

    return f"cuda:{torch.cuda.current_device()}" if td.get_backend() == "nccl" else "cpu"


# ---- the launcher ----------------------------------------------------------------------------
def launch(run: RunDir, data_dir: Path, nproc: int, resume: bool, quiet: bool = False,
           plain: bool = False, job: int | None = None) -> dict[str, Any]:
    """Start `nproc` ranks on this machine with torchrun's agent and wait for them.

    A rank that stopped on request makes this raise `Stopped` (the run is interrupted and
    resumable); any other failure is recorded in the run's status as `rank R: error` (the
    first rank to fail) and raised as RunFailed. Returns the result rank 0 saved."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from lab.train import Stopped

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          run_id=f"lab-{run.id}", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    args = ["-m", "lab.distributed", str(run.path), "--data-dir", str(data_dir)]
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
        run.update_status(state="failed", error=f"rank {rank}: {message}", finished=now_iso())
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


# ---- one rank --------------------------------------------------------------------------------
def rank_main(argv: list[str] | None = None) -> int:
    """`python -m lab.distributed RUN_DIR --data-dir D [--resume]`, started by `launch`."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_rank_main)(argv)


def _rank_main(argv: list[str] | None) -> int:
    from lab.stopping import SignalStop
    from lab.train import fit

    parser = argparse.ArgumentParser(prog="python -m lab.distributed")
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--job", type=int)
    args = parser.parse_args(argv)
    dist = from_env()
    if dist is None:
        raise ConfigError("python -m lab.distributed runs under torchrun (RANK, WORLD_SIZE)")
    run = RunDir(args.run)
    config = run.config()
    try:
        with SignalStop(escalate=False, announce=False) as signals:
            should_stop = _stop_check(signals, args.job, run) if dist.main else signals
            emit = _printer(config.label, args.quiet or not dist.main, args.plain)
            with emit:
                fit(config, run, args.data_dir, emit=emit, resume=args.resume,
                    should_stop=should_stop, dist=dist)
    except KeyboardInterrupt:
        return STOPPED_EXIT
    except Exception as exc:  # one line here, and the whole message for the launcher
        import torch.distributed as td
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        lost_peer = isinstance(exc, td.DistError) or any(
            k in str(exc).lower() for k in ("closed by peer", "reset by peer", "remote"))
        if lost_peer:
            # A consequence: wait a moment, so the agent sees the rank that died first and
            # reports that one; and say nothing here, the launcher says it.
            time.sleep(PEER_GRACE_S)
        ErrorHandler().record_exception(exc)
        if os.environ.get("LAB_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        text = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        if not lost_peer:
            sys.stderr.write(f"lab: error: rank {dist.rank}: {' '.join(text.split())}\n")
        return 1
    finally:
        shutdown()
    return 0


def _stop_check(signals: Any, job: int | None, run: RunDir) -> Any:
    """Rank 0 also stops for a cancelled job, or when the launcher that started it is gone."""
    if job is None:
        return signals
    from lab.jobrun import StopCheck
    from lab.queue import JobQueue

    queue = JobQueue.open(run.path.parent)
    # our parent is torchrun's agent, inside the job process: it going away is a crash
    return StopCheck(queue, job, parent=os.getppid(), signals=signals)


def _printer(label: str, quiet: bool, plain: bool) -> Any:
    from lab.cli.common import err
    from lab.cli.progress import ProgressPrinter

    return ProgressPrinter(err, label, quiet=quiet, rich_bar=False if plain else None)


def check_sync_bn(config: Any, device_type: str) -> None:
    """SyncBatchNorm on the CPU fails at the first batch; say so before any rank trains. (The
    batch split is checked by the config itself: batch_size must divide by nproc.)"""
    if config.sync_bn and config.nproc > 1 and device_type != "cuda":
        raise ConfigError("sync_bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel)",
                          hint="--set sync_bn=false on the CPU")


if __name__ == "__main__":
    sys.exit(rank_main())

"""This process's place in a data-parallel job, and the few collectives the loop needs.

A leaf: it imports nothing of the engine above `lab.errors`. The engine reads only the standard
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, or torchrun's rendezvous),
so `lab run --nproc N`, `torchrun --nnodes ... -m lab run ...` and `srun` all work alike. With
one process every collective is the identity, so the loop has a single code path.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from lab.errors import ConfigError

_joined = False  # this process has been a rank of a process group (set by `init`)


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
    global _joined
    _joined = True
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=10),
                              device_id=torch.device(device) if cuda else None)
    return device


def leave(code: int) -> NoReturn:
    """Exit with `code`; a process that was a rank skips the interpreter's teardown.

    By then its records are closed and its process group destroyed, but the C++ side of
    torch.distributed may still own threads (Gloo's workers hold tensors with Python references):
    torn down with the interpreter, they sometimes abort the process (SIGABRT, "terminate called
    without an active exception", seen on a rank that had finished cleanly) or keep it from
    exiting, which leaves torchrun's agent waiting at its exit barrier. Nothing a rank needs
    runs at exit (`lab` registers no atexit handlers), so it flushes its output and leaves.
    """
    if not _joined:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed or replaced
            stream.flush()
    os._exit(code)


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


def check_sync_bn(config: Any, device_type: str) -> None:
    """SyncBatchNorm on the CPU fails at the first batch; say so before any rank trains. (The
    batch split is checked by the config itself: batch_size must divide by nproc.)"""
    if config.sync_bn and config.nproc > 1 and device_type != "cuda":
        raise ConfigError("sync_bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel)",
                          hint="--set sync_bn=false on the CPU")


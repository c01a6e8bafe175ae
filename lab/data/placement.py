"""Where a run's images wait for their batch: on the training device, in host memory, or on disk.

The fastest place is the device (a batch is one ``index_select``), but only a data set that
fits there can live there; the next is host memory (each batch gathered and copied over), and
when even that is too small, the memory-mapped cache itself (the page cache does the rest).
`choose_data_on` picks the first that fits with a margin; the budgets can be set by
environment (`LAB_DEVICE_MEMORY`, `LAB_HOST_MEMORY`, in bytes) so tests and cautious users can
force the choice on any machine. The choice never changes what a run computes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lab.errors import ConfigError

DEVICE_MEMORY_ENV = "LAB_DEVICE_MEMORY"
HOST_MEMORY_ENV = "LAB_HOST_MEMORY"
# The share of free memory the images may take: the rest is for the model, the batches in
# flight, and whatever else the machine runs.
MARGIN = 0.8


@dataclass(frozen=True)
class Placement:
    """The chosen place and, for a person, why."""

    mode: str  # device | host | disk
    reason: str


def _budget_from_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be a whole number of bytes (0 or more)",
                          hint=f"unset {name} to measure the free memory")
    return value


def check_budgets() -> None:
    """Refuse a malformed budget variable now, before anything is written."""
    _budget_from_env(DEVICE_MEMORY_ENV)
    _budget_from_env(HOST_MEMORY_ENV)


def host_budget() -> int:
    """Host memory free for images: `LAB_HOST_MEMORY`, else what psutil says is available."""
    value = _budget_from_env(HOST_MEMORY_ENV)
    if value is not None:
        return value
    import psutil

    return int(psutil.virtual_memory().available)


def device_budget(device: torch.device) -> int | None:
    """Device memory free for images: `LAB_DEVICE_MEMORY`, else the free memory of a CUDA
    device; None for a device whose memory is host memory (the CPU, and MPS's unified memory)."""
    value = _budget_from_env(DEVICE_MEMORY_ENV)
    if value is not None:
        return value
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**26 else f"{n / 2**20:.1f} MiB"


def choose_data_on(requested: str, image_bytes: int, device: torch.device,
                   working_bytes: int = 0) -> Placement:
    """`requested` as given, or for "auto" the first place where `image_bytes` (plus, on the
    device, `working_bytes` for the model and its batch) fits in the free memory's `MARGIN`."""
    if requested != "auto":
        return Placement(requested, "as asked (data_on)")
    host = host_budget()
    on_device = device_budget(device)
    need = f"{_gib(image_bytes)} of images"
    if on_device is None:  # the device's memory is the host's: device unless RAM is too small
        if image_bytes + working_bytes <= MARGIN * host:
            return Placement("device", f"{need} fit in {_gib(host)} of free memory")
        return Placement("disk", f"{need} do not fit in {_gib(host)} of free memory")
    if image_bytes + working_bytes <= MARGIN * on_device:
        return Placement("device", f"{need} fit in {_gib(on_device)} free on {device}")
    if image_bytes <= MARGIN * host:
        return Placement("host", f"{need} do not fit in {_gib(on_device)} free on {device}; "
                                 f"they fit in {_gib(host)} of host memory")
    return Placement("disk", f"{need} fit neither in {_gib(on_device)} free on {device} nor in "
                             f"{_gib(host)} of host memory")

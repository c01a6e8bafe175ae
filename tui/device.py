"""What the machine is doing: per-GPU use and memory through NVML when it is there, else CPU
load and memory from /proc (or `os`), so the panel works on a laptop and on a GPU box alike."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

GB = 1024**3


@dataclass(frozen=True)
class DeviceStat:
    name: str  # "GPU 0", "CPU"
    util: float | None  # percent busy, None when unknown yet
    mem_used: float | None  # bytes
    mem_total: float | None
    detail: str = ""  # e.g. "16 cores, load 1.2" or the GPU's model

    def line(self) -> str:
        parts = [self.name]
        if self.util is not None:
            parts.append(f"{self.util:.0f}%")
        if self.mem_total:
            parts.append(f"{(self.mem_used or 0) / GB:.1f}/{self.mem_total / GB:.0f} GB")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


class DeviceProbe:
    """Samples devices; keeps the previous CPU counters so utilisation is a real rate."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._nvml_tried = False
        self._cpu_prev: tuple[int, int] | None = None

    def sample(self) -> list[DeviceStat]:
        gpus = self._gpus()
        return gpus if gpus else [self._cpu()]

    # -- NVIDIA ------------------------------------------------------------------------------
    def _gpus(self) -> list[DeviceStat]:
        nvml = self._load_nvml()
        if nvml is None:
            return []
        stats = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                stats.append(DeviceStat(f"GPU {i}", float(util), float(mem.used),
                                        float(mem.total)))
        except Exception:  # noqa: BLE001 - a driver hiccup: fall back to the CPU view
            return []
        return stats

    def _load_nvml(self) -> Any:
        if self._nvml_tried:
            return self._nvml
        self._nvml_tried = True
        try:
            import pynvml  # optional: nvidia-ml-py

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - not installed, no driver, no GPU
            self._nvml = None
        return self._nvml

    # -- CPU ---------------------------------------------------------------------------------
    def _cpu(self) -> DeviceStat:
        cores = os.cpu_count() or 1
        util = self._cpu_util()
        total, available = _meminfo()
        detail = f"{cores} cores"
        if util is None:
            with contextlib.suppress(OSError):
                detail += f", load {os.getloadavg()[0]:.1f}"
        used = total - available if total is not None and available is not None else None
        return DeviceStat("CPU", util, used, total, detail)

    def _cpu_util(self) -> float | None:
        counters = _cpu_counters()
        if counters is None:
            return None
        prev, self._cpu_prev = self._cpu_prev, counters
        if prev is None:
            return None
        busy = counters[0] - prev[0]
        total = counters[1] - prev[1]
        return 100.0 * busy / total if total > 0 else None


def _cpu_counters() -> tuple[int, int] | None:
    """(busy, total) jiffies from /proc/stat; None where there is no /proc."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _meminfo() -> tuple[float | None, float | None]:
    try:
        values = {}
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                values[key] = float(rest.split()[0]) * 1024
        return values.get("MemTotal"), values.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return float(total), None
    except (ValueError, OSError, AttributeError):
        return None, None

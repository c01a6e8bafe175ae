"""What the machine is doing: per-GPU use and memory through NVML when it is there (else
`nvidia-smi`), else CPU load and memory from /proc (or `os`), so the panel works on a laptop
and on a GPU box alike; and a bounded history of each GPU for the sparklines. Nothing here
imports torch: the console's start must stay light."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass
from typing import Any

GB = 1024**3
HISTORY = 60  # samples kept per GPU: two minutes at the console's one sample per 2 s
BLOCKS = "▁▂▃▄▅▆▇█"
SMI_QUERY = "index,name,utilization.gpu,memory.used,memory.total"


@dataclass(frozen=True)
class DeviceStat:
    name: str  # "GPU 0", "CPU"
    util: float | None  # percent busy, None when unknown yet
    mem_used: float | None  # bytes
    mem_total: float | None
    detail: str = ""  # e.g. "16 cores, load 1.2" or the GPU's model

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("GPU")

    @property
    def mem_pct(self) -> float | None:
        if not self.mem_total or self.mem_used is None:
            return None
        return 100.0 * self.mem_used / self.mem_total

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
        self._smi: str | None = shutil.which("nvidia-smi")  # when NVML is not importable

    def sample(self) -> list[DeviceStat]:
        gpus = self._gpus()
        return gpus if gpus else [self._cpu()]

    # -- NVIDIA ------------------------------------------------------------------------------
    def _gpus(self) -> list[DeviceStat]:
        nvml = self._load_nvml()
        if nvml is None:
            return self._gpus_smi()
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

    def _gpus_smi(self) -> list[DeviceStat]:
        """`nvidia-smi` once per sample (about 50 ms); given up after it fails once, so a
        broken driver does not cost a timeout every 2 s."""
        if self._smi is None:
            return []
        try:
            done = subprocess.run([self._smi, f"--query-gpu={SMI_QUERY}",
                                   "--format=csv,noheader,nounits"], capture_output=True,
                                  text=True, timeout=5, check=True)
            return parse_smi(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            self._smi = None
            return []

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


def parse_smi(text: str) -> list[DeviceStat]:
    """`nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`: one GPU a line, memory in MiB; "[N/A]" is unknown."""
    def number(value: str) -> float | None:
        try:
            return float(value)
        except ValueError:
            return None

    stats = []
    for line in text.strip().splitlines():
        index, rest = line.split(",", 1) if "," in line else (line, "")
        name, util, used, total = (v.strip() for v in rest.rsplit(",", 3)) \
            if rest.count(",") >= 3 else ("", "", "", "")
        index = index.strip()
        if not index.isdigit() or not name:
            raise ValueError(f"nvidia-smi: unexpected line {line!r}")
        used_mib, total_mib = number(used), number(total)
        stats.append(DeviceStat(f"GPU {index}", number(util),
                                used_mib * 1024**2 if used_mib is not None else None,
                                total_mib * 1024**2 if total_mib is not None else None,
                                name))
    return stats


class DeviceHistory:
    """The last `size` samples of each GPU's use and memory (percent; None where unknown)."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self._util: dict[str, deque[float | None]] = {}
        self._mem: dict[str, deque[float | None]] = {}
        self.latest: dict[str, DeviceStat] = {}

    def add(self, stats: list[DeviceStat]) -> None:
        for stat in stats:
            if not stat.is_gpu:
                continue
            self._util.setdefault(stat.name, deque(maxlen=self.size)).append(stat.util)
            self._mem.setdefault(stat.name, deque(maxlen=self.size)).append(stat.mem_pct)
            self.latest[stat.name] = stat

    @property
    def names(self) -> list[str]:
        return sorted(self.latest, key=lambda n: (len(n), n))  # GPU 2 before GPU 10

    def util(self, name: str) -> list[float | None]:
        return list(self._util.get(name, ()))

    def mem(self, name: str) -> list[float | None]:
        return list(self._mem.get(name, ()))


def spark(values: list[float | None], width: int) -> str:
    """The last `width` values as blocks on a fixed 0-100 scale (so a bar's height means the
    same percent at every moment); an unknown value is a blank."""
    shown = values[-width:] if width > 0 else []
    out = []
    for v in shown:
        if v is None:
            out.append(" ")
        else:
            level = round(max(0.0, min(100.0, v)) / 100 * (len(BLOCKS) - 1))
            out.append(BLOCKS[level])
    return "".join(out)


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

"""System load over a run's life: CPU, resident memory and, on NVIDIA GPUs, utilisation,
memory and power, sampled every few seconds into `runs/<id>/system.jsonl`.

A background thread samples so the training loop never waits for it; each sample is one
`append_jsonl` line, so a reader of a live run sees whole samples only. CPU and memory come from
psutil; GPU figures from NVML (`nvidia-ml-py`, the `gpu` extra) when it is installed and the run
is on CUDA: without it the GPU's peak memory still reaches `result.json` from torch. The samples
are of the run's own process and of the GPU it uses (mapped by UUID, so CUDA_VISIBLE_DEVICES
renumbering does not matter), not of the machine's other tenants.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from lab.core.hooks import Hook
from lab.runs import RunDir, append_jsonl

SYSTEM_FILE = "system.jsonl"
SAMPLE_EVERY_S = 5.0


def system_path(run: RunDir) -> Path:
    return run.path / SYSTEM_FILE


class Nvml:
    """NVML for one device, or nothing (not installed, no driver, not a CUDA run)."""

    def __init__(self, module: Any, handle: Any) -> None:
        self.module, self.handle = module, handle

    @classmethod
    def open(cls, device: Any, module: Any = None) -> Nvml | None:
        if getattr(device, "type", str(device).split(":")[0]) != "cuda":
            return None
        try:
            if module is None:
                import pynvml as module
            module.nvmlInit()
            return cls(module, _handle(module, device))
        except Exception:  # noqa: BLE001 - no NVML here: GPU samples are simply absent
            return None

    def sample(self) -> dict[str, Any]:
        m, h = self.module, self.handle
        out: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            out["gpu_util"] = float(m.nvmlDeviceGetUtilizationRates(h).gpu)
        with contextlib.suppress(Exception):
            memory = m.nvmlDeviceGetMemoryInfo(h)
            out["gpu_mem"], out["gpu_mem_total"] = int(memory.used), int(memory.total)
        with contextlib.suppress(Exception):
            out["gpu_power_w"] = m.nvmlDeviceGetPowerUsage(h) / 1000.0  # milliwatts
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.module.nvmlShutdown()


def _handle(module: Any, device: Any) -> Any:
    """The NVML handle of torch's `device`: by UUID (the index NVML uses ignores
    CUDA_VISIBLE_DEVICES), else by the index it maps to in CUDA_VISIBLE_DEVICES."""
    import torch

    index = device.index if getattr(device, "index", None) is not None else \
        torch.cuda.current_device()
    with contextlib.suppress(Exception):
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return module.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else
                                                f"GPU-{uuid}")
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and visible[index].strip().isdigit():
        index = int(visible[index])
    return module.nvmlDeviceGetHandleByIndex(index)


class SystemSampler(Hook):
    """Samples in a daemon thread from `start()` to `stop()`; the loop only tells it where
    training stands (two attribute writes a step)."""

    def __init__(self, run: RunDir, device: Any, every: float = SAMPLE_EVERY_S,
                 nvml: Nvml | None = None) -> None:
        import psutil

        self.path, self.device, self.every = system_path(run), device, every
        self.process = psutil.Process()
        self.nvml = nvml
        self.epoch, self.step = 0, 0
        self.peak_rss = 0
        self.peak_gpu_mem: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        self.epoch, self.step = epoch, step

    def start(self) -> None:
        self.process.cpu_percent(None)  # the first call only sets the reference point
        self._thread = threading.Thread(target=self._run, name="lab-system-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a last sample (the run's end is always in the record)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.record()
        if self.nvml is not None:
            self.nvml.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.record()

    def record(self) -> None:
        try:
            sample = self.sample()
            append_jsonl(self.path, sample)
        except Exception:  # noqa: BLE001 - a failed sample never disturbs training
            return
        self.samples += 1

    def sample(self) -> dict[str, Any]:
        with self.process.oneshot():
            rss = int(self.process.memory_info().rss)
            cpu = float(self.process.cpu_percent(None))
        self.peak_rss = max(self.peak_rss, rss)
        sample: dict[str, Any] = {"time": round(time.time(), 3),
                                  "elapsed": round(time.monotonic() - self._t0, 3),
                                  "epoch": self.epoch, "step": self.step,
                                  "cpu_percent": cpu, "rss": rss}
        if self.nvml is not None:
            sample.update(self.nvml.sample())
            if "gpu_mem" in sample:
                self.peak_gpu_mem = max(self.peak_gpu_mem or 0, sample["gpu_mem"])
        return sample

    def summary(self) -> dict[str, Any]:
        """For result.json: peaks over the run (GPU memory from torch's own counter too)."""
        torch_peak = None
        if getattr(self.device, "type", None) == "cuda":
            with contextlib.suppress(Exception):
                import torch

                torch_peak = int(torch.cuda.max_memory_allocated(self.device))
        return {"samples": self.samples, "every_s": self.every, "peak_rss": self.peak_rss,
                "peak_gpu_mem": self.peak_gpu_mem, "peak_gpu_allocated": torch_peak}

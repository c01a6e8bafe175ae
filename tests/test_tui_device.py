"""The device panel's probe: NVML when importable (faked here: no GPU on this box), else CPU."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from tui.device import GB, DeviceProbe


def fake_nvml(count: int) -> SimpleNamespace:
    return SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=50 + h),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=(h + 1) * GB, total=80 * GB))


def test_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(2))
    stats = DeviceProbe().sample()
    assert [s.line() for s in stats] == ["GPU 0 50% 1.0/80 GB", "GPU 1 51% 2.0/80 GB"]


def test_cpu_and_memory_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    probe = DeviceProbe()
    first = probe.sample()
    time.sleep(0.2)
    [cpu] = probe.sample()  # the second sample has a CPU rate
    assert first[0].name == cpu.name == "CPU"
    assert "cores" in cpu.detail and cpu.mem_total and cpu.mem_total > cpu.mem_used > 0
    assert cpu.util is not None and 0 <= cpu.util <= 100

"""System samples: a real sampler thread on this CPU (psutil) writing whole lines, and the NVML
path against a fake NVML module (no GPU here): units, device mapping, failures tolerated."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from lab.launch.system import Nvml, SystemSampler, system_path
from lab.runs import RunDir


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    r = RunDir(tmp_path / "20250301-100000-l3-0c03")
    r.path.mkdir()
    return r


def test_a_sampler_records_cpu_and_memory_while_work_goes_on(run: RunDir) -> None:
    sampler = SystemSampler(run, torch.device("cpu"), every=0.02)
    sampler.start()
    x = torch.randn(256, 256)
    for step in range(1, 40):
        x = (x @ x).tanh()  # work on this thread while the sampler samples beside it
        sampler.on_batch(1, step, 40, step, 64)
    sampler.stop()
    lines = system_path(run).read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    assert len(samples) == sampler.samples >= 2
    assert all(s["rss"] > 10 * 2**20 and s["cpu_percent"] >= 0 for s in samples)
    assert samples[-1]["step"] == 39 and samples[-1]["epoch"] == 1  # the last sample: the end
    assert [s["elapsed"] for s in samples] == sorted(s["elapsed"] for s in samples)
    summary = sampler.summary()
    assert summary["peak_rss"] == max(s["rss"] for s in samples)
    assert summary["peak_gpu_mem"] is None and "gpu_util" not in samples[0]


class FakeNvml(types.SimpleNamespace):
    """The calls lab makes, answering like NVML for a GPU of index `present`."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(fail=fail, asked=[], shut=False)

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        raise RuntimeError("no such uuid")  # forces the CUDA_VISIBLE_DEVICES mapping

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self.asked.append(index)
        return f"handle-{index}"

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        if self.fail:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return types.SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        if self.fail:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return types.SimpleNamespace(used=31 * 2**30, total=139 * 2**30, free=108 * 2**30)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        if self.fail:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return 412_500  # milliwatts


@pytest.mark.parametrize(("visible", "device", "nvml_index"), [
    ("3,5", "cuda:1", 5), ("3,5", "cuda:0", 3), ("", "cuda:2", 2), ("7", "cuda:0", 7)])
def test_the_gpu_is_found_through_cuda_visible_devices(
        monkeypatch: pytest.MonkeyPatch, visible: str, device: str, nvml_index: int) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fake = FakeNvml()
    nvml = Nvml.open(torch.device(device), module=fake)
    assert nvml is not None and fake.asked == [nvml_index]


def test_gpu_samples_have_the_units_of_the_record(run: RunDir,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    fake = FakeNvml()
    nvml = Nvml.open(torch.device("cuda:0"), module=fake)
    sampler = SystemSampler(run, torch.device("cpu"), every=3600, nvml=nvml)
    sampler.start()
    sampler.stop()  # one sample: the last
    [sample] = [json.loads(line) for line in system_path(run).read_text().splitlines()]
    assert sample["gpu_util"] == 87.0 and sample["gpu_power_w"] == 412.5
    assert (sample["gpu_mem"], sample["gpu_mem_total"]) == (31 * 2**30, 139 * 2**30)
    assert sampler.summary()["peak_gpu_mem"] == 31 * 2**30 and fake.shut


def test_a_failing_nvml_leaves_cpu_samples_and_training_alone(run: RunDir) -> None:
    nvml = Nvml(FakeNvml(fail=True), "handle-0")
    assert nvml.sample() == {}
    sampler = SystemSampler(run, torch.device("cpu"), every=3600, nvml=nvml)
    sampler.start()
    sampler.stop()
    [sample] = [json.loads(line) for line in system_path(run).read_text().splitlines()]
    assert sample["rss"] > 0 and "gpu_util" not in sample


def test_no_nvml_for_a_cpu_run_or_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    assert Nvml.open(torch.device("cpu"), module=FakeNvml()) is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert Nvml.open(torch.device("cuda:0")) is None

"""The device panel's probe (NVML when importable, else nvidia-smi, else the CPU; both faked
here: no GPU on this box), the bounded history and its sparklines, and both on screen."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.tui_runs import aio, until
from tui.app import make_app
from tui.device import BLOCKS, GB, DeviceHistory, DeviceProbe, DeviceStat, spark
from tui.widgets.gpu_sparks import GpuSparks
from tui.widgets.topbar import DevicePanel


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


def test_cpu_and_memory_without_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setenv("PATH", str(tmp_path))  # and no nvidia-smi either
    probe = DeviceProbe()
    first = probe.sample()
    time.sleep(0.2)
    [cpu] = probe.sample()  # the second sample has a CPU rate
    assert first[0].name == cpu.name == "CPU"
    assert "cores" in cpu.detail and cpu.mem_total and cpu.mem_total > cpu.mem_used > 0
    assert cpu.util is not None and 0 <= cpu.util <= 100


# ---- nvidia-smi, where NVML is not importable ----------------------------------------------------
def fake_smi(folder: Path, output: str, code: int = 0) -> Path:
    """An `nvidia-smi` on PATH that prints `output` and counts its calls."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho call >> {folder / 'calls'}\nprintf '%s' '{output}'\n"
                      f"exit {code}\n")  # shell builtins only: PATH holds this folder alone
    script.chmod(0o755)
    return folder / "calls"


def test_gpus_through_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fake_smi(tmp_path / "bin", "0, NVIDIA H200, 87, 32000, 143771\n"
                               "1, NVIDIA H200, [N/A], 0, 143771\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    gpu0, gpu1 = DeviceProbe().sample()
    assert gpu0.line() == "GPU 0 87% 31.2/140 GB NVIDIA H200"
    assert (gpu1.name, gpu1.util, gpu1.mem_pct) == ("GPU 1", None, 0.0)


@pytest.mark.parametrize(("output", "code"), [("", 9), ("No devices were found\n", 0),
                                              ("0, H200, 87\n", 0)])
def test_a_failing_nvidia_smi_falls_back_to_the_cpu_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, code: int) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    calls = fake_smi(tmp_path / "bin", output, code)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    probe = DeviceProbe()
    assert [s.name for s in probe.sample()] == [s.name for s in probe.sample()] == ["CPU"]
    assert calls.read_text().count("call") == 1  # not asked again every 2 s


# ---- history and sparklines --------------------------------------------------------------------
def test_history_is_bounded_per_gpu() -> None:
    history = DeviceHistory(size=60)
    for k in range(150):
        history.add([DeviceStat("GPU 0", float(k % 101), k * GB, 100 * GB),
                     DeviceStat("GPU 1", None, None, None), DeviceStat("CPU", 5.0, 1, 2)])
    assert history.names == ["GPU 0", "GPU 1"]  # the CPU has no sparkline
    assert history.util("GPU 0") == [float(k % 101) for k in range(90, 150)]
    assert history.mem("GPU 0") == [float(k) for k in range(90, 150)]
    assert history.util("GPU 1") == history.mem("GPU 1") == [None] * 60


def heights(blocks: str) -> list[int]:
    return [BLOCKS.index(b) for b in blocks]


@pytest.mark.parametrize("values", [
    [0, 5, 12, 25, 40, 55, 70, 85, 99, 100],
    [100, 90, 80, 50, 20, 3, 0],
    list(range(0, 101, 7)),
])
def test_sparkline_heights_follow_the_values(values: list[float]) -> None:
    """On a fixed 0-100 scale: monotone values give monotone heights, 0 the lowest block, 100
    the highest; an unknown value is a blank; only the newest `width` are drawn."""
    shown = heights(spark(values, len(values)))
    rising = values[-1] > values[0]
    assert shown == sorted(shown, reverse=not rising)
    assert shown[0 if rising else -1] == 0 and shown[-1 if rising else 0] == len(BLOCKS) - 1
    assert spark(values, 3) == spark(values[-3:], 3)
    assert spark([50, None, -20, 180], 4) == "▅ ▁█"


# ---- on screen ---------------------------------------------------------------------------------
@aio
async def test_gpu_sparklines_on_the_main_screen(tmp_path: Path) -> None:
    """A fake sampler feeds the console two GPUs, one getting busier and one quieter: each has
    its row, its use sparkline rises or falls with the samples (the bound on the history is
    `test_history_is_bounded_per_gpu`)."""
    calls = {"n": 0}

    def sampler() -> list[DeviceStat]:
        k = calls["n"] = calls["n"] + 1
        return [DeviceStat("GPU 0", min(100.0, 8.0 * k), k * GB, 80 * GB, "H200"),
                DeviceStat("GPU 1", max(0.0, 100.0 - 8.0 * k), 40 * GB, 80 * GB, "H200")]

    runs = tmp_path / "runs"
    app = make_app(runs, tmp_path / "data", device_probe=sampler, refresh_s=3600,
                   poll_s=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        sparks = app.query_one(GpuSparks)
        main = app.screen
        await until(pilot, lambda: sparks.history.names)  # the sample taken at the start
        for n in range(2, 13):  # the screen's own sampling, sooner than every 2 s
            main.sample_devices()
            await until(pilot, lambda n=n: len(sparks.history.util("GPU 0")) >= n)
        await pilot.pause(0.05)
        assert sparks.display
        rows = str(sparks.render()).splitlines()
        assert [r.split(" use ")[0] for r in rows] == ["GPU 0", "GPU 1"]
        use = [heights(r.split(" use ")[1].split()[0]) for r in rows]
        assert use[0] == sorted(use[0]) and use[0][0] < use[0][-1]
        assert use[1] == sorted(use[1], reverse=True) and use[1][0] > use[1][-1]
        assert rows[1].endswith("50% 40.0/80 GB")
        assert not app.query_one(DevicePanel).display  # the GPUs are not said twice


@aio
async def test_without_a_gpu_the_sparklines_hide_and_the_cpu_shows(tmp_path: Path) -> None:
    app = make_app(tmp_path / "runs", tmp_path / "data", refresh_s=3600, poll_s=3600,
                   device_probe=lambda: [DeviceStat("CPU", 12.0, 3 * GB, 16 * GB, "2 cores")])
    async with app.run_test(size=(100, 24)) as pilot:
        panel = app.query_one(DevicePanel)
        await until(pilot, lambda: "CPU" in str(panel.render()))
        assert not app.query_one(GpuSparks).display
        assert str(panel.render()) == "CPU 12% 3.0/16 GB 2 cores"

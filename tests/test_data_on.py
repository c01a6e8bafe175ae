"""Where the images wait (`data_on`): memory-mapped caches, the automatic choice under memory
budgets, and the same batches, the same training and the same results from device, host or disk.
"""

from __future__ import annotations

import io
import json
import mmap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from lab.config import RunConfig
from lab.data import store
from lab.data.augment import AugmentSpec
from lab.data.digits import load_digits_dataset
from lab.data.gather import ahead
from lab.data.loader import DeviceLoader
from lab.data.placement import DEVICE_MEMORY_ENV, HOST_MEMORY_ENV, choose_data_on
from lab.errors import ConfigError, ExitCode
from lab.launch.run import start_run
from lab.levels import level_config
from lab.views.progress import ProgressPrinter
from tests.cli_inprocess import run_cli

MODES = ("device", "host", "disk")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA")]),
]


def _cache_digits(data_dir: Path, name: str = "dig") -> store.Dataset:
    """Digits cached as an imported set with an official test split (the last 297 images)."""
    d = load_digits_dataset()
    store.save(data_dir, name, store.Imported(
        classes=d.classes, train_x=d.train_x[:1500], train_y=d.train_y[:1500],
        test_x=d.train_x[1500:], test_y=d.train_y[1500:], source="digits", source_sha256="0",
        official=False, official_reason="test copy", format="test", default_name=name))
    return d


# ---- the cache is mapped, not read --------------------------------------------------------
def test_cached_arrays_are_memory_mapped_read_only_and_intact(tmp_path: Path) -> None:
    d = _cache_digits(tmp_path)
    data = store.load_cached(tmp_path, "dig")
    for name, want in (("train_x", d.train_x[:1500]), ("train_y", d.train_y[:1500]),
                       ("test_x", d.train_x[1500:]), ("test_y", d.train_y[1500:])):
        got = getattr(data, name)
        assert isinstance(got, np.memmap), name
        assert isinstance(got.base, mmap.mmap), name  # pages of the file, not a copy
        assert not got.flags.writeable, name
        assert np.array_equal(got, want) and got.dtype == want.dtype, name
    assert store.verify_dataset(tmp_path, "dig")["ok"]


def test_a_compressed_cache_is_still_read(tmp_path: Path) -> None:
    """A data.npz written compressed (by hand, or another tool) cannot be mapped: read whole."""
    d = _cache_digits(tmp_path)
    path = tmp_path / "dig" / store.DATA
    with np.load(path) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    data = store.load_cached(tmp_path, "dig")
    assert not isinstance(data.train_x, np.memmap)
    assert np.array_equal(data.train_x, d.train_x[:1500])


# ---- the choice ---------------------------------------------------------------------------
GIB = 2**30


@pytest.mark.parametrize(("requested", "device_free", "host_free", "device", "want"), [
    ("auto", 10 * GIB, 10 * GIB, "cuda", "device"),
    ("auto", 1 * GIB, 10 * GIB, "cuda", "host"),  # not on the device, in RAM
    ("auto", 1 * GIB, 1 * GIB, "cuda", "disk"),  # neither
    ("auto", 1 * GIB, 1 * GIB, "cpu", "disk"),
    ("auto", None, 10 * GIB, "cpu", "device"),  # the CPU's memory is the host's
    ("auto", None, 1 * GIB, "cpu", "disk"),  # ... so host is never better than device
    ("auto", int(2.4 * GIB), 10 * GIB, "cuda", "host"),  # 2 GiB + the margin: over 2.4
    ("host", 10 * GIB, 10 * GIB, "cuda", "host"),  # as asked, whatever fits
    ("disk", None, None, "cpu", "disk"),
    ("device", 0, 0, "cpu", "device"),
])
def test_auto_takes_the_first_place_the_images_fit(
        monkeypatch: pytest.MonkeyPatch, requested: str, device_free: int | None,
        host_free: int | None, device: str, want: str) -> None:
    for env, value in ((DEVICE_MEMORY_ENV, device_free), (HOST_MEMORY_ENV, host_free)):
        if value is None:
            monkeypatch.delenv(env, raising=False)
        else:
            monkeypatch.setenv(env, str(value))
    if device == "cpu" and host_free is None:
        monkeypatch.setenv(HOST_MEMORY_ENV, str(100 * GIB))
    placement = choose_data_on(requested, 2 * GIB, torch.device(device))
    assert placement.mode == want, placement.reason
    assert placement.reason


@pytest.mark.parametrize("value", ["lots", "-1", "1.5", "1e9", "0x10"])
@pytest.mark.parametrize("env", [DEVICE_MEMORY_ENV, HOST_MEMORY_ENV])
def test_a_malformed_budget_is_one_line(monkeypatch: pytest.MonkeyPatch, env: str,
                                        value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=rf"^{env}='.*' must be a whole number of bytes"):
        choose_data_on("auto", 1, torch.device("cpu"))


@pytest.mark.parametrize("value", ["gpu", "Device", "", "none", "ram"])
def test_a_bad_data_on_is_one_line(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^data_on='.*': must be one of auto, device, host, "
                                          r"disk$"):
        RunConfig(data_on=value)


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["--set", "data_on=gpu"], {}, "data_on"),
    (["--set", "data_on=disk"], {HOST_MEMORY_ENV: "plenty"}, HOST_MEMORY_ENV),
    (["--set", "data_on=auto"], {DEVICE_MEMORY_ENV: "-3"}, DEVICE_MEMORY_ENV),
])
def test_bad_placement_input_on_the_cli_is_one_line_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        lab_dirs: dict[str, Path], argv: list[str], env: dict[str, str], named: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, err = run_cli(["run", "--level", "3", "--dataset", "digits", "--image-size", "16",
                         "--device", "cpu", *argv], capsys)
    assert code == ExitCode.USAGE
    lines = err.strip().splitlines()
    assert len(lines) <= 2 and lines[0].startswith("lab: error:") and named in lines[0], err
    assert not lab_dirs["runs"].exists() or not any(lab_dirs["runs"].iterdir())


# ---- the same batches from everywhere -----------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shuffle", "augment", "start_batch"), [
    (True, AugmentSpec(hflip=0.5, rotation=10, crop_padding=2, brightness=0.2, contrast=0.2,
                       saturation=0.2), 0),
    (True, AugmentSpec(hflip=0.5, rotation=10), 2),  # resumed mid-epoch: the draws skipped
    (False, None, 0),  # validation and test
])
def test_every_mode_gives_the_same_batches(tmp_path: Path, device: str, shuffle: bool,
                                           augment: AugmentSpec | None, start_batch: int) -> None:
    _cache_digits(tmp_path)
    pool = store.load_cached(tmp_path, "dig").train_x  # a memmap, as a run has it
    rows = np.random.default_rng(0).permutation(len(pool))[:333]
    labels = np.arange(333) % 10
    got = {}
    for mode in MODES:
        loader = DeviceLoader.from_part(pool, rows, labels, device, mode, batch_size=50,
                                        image_size=24, augment=augment, shuffle=shuffle, seed=5)
        loader.set_epoch(3, start_batch=start_batch)
        assert loader.data_on == mode and loader.num_samples == 333
        got[mode] = [(x.cpu(), y.cpu()) for x, y in loader]
    assert len(got["device"]) == 7 - start_batch
    for mode in ("host", "disk"):
        for (xa, ya), (xb, yb) in zip(got["device"], got[mode], strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb), mode


def test_a_loader_left_half_way_lets_go(tmp_path: Path) -> None:
    """Leaving an epoch early (a stop request) ends the gather cleanly; the next epoch works."""
    _cache_digits(tmp_path)
    pool = store.load_cached(tmp_path, "dig").train_x
    loader = DeviceLoader.from_part(pool, np.arange(200), np.zeros(200, np.int64), "cpu",
                                    "disk", batch_size=16, image_size=16, shuffle=True)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert sum(len(y) for _, y in loader) == 200


# ---- the prefetch thread (CUDA's; its logic is tested here on plain items) -----------------
def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lab-prefetch"]


def test_ahead_keeps_the_order_and_ends() -> None:
    assert list(ahead(iter(range(100)), 3)) == list(range(100))
    assert list(ahead(iter([]), 1)) == []
    assert _prefetch_threads() == []


def test_ahead_raises_the_threads_error_in_the_consumer() -> None:
    def failing():  # noqa: ANN202
        yield 1
        yield 2
        raise OSError("the disk went away")

    got = []
    with pytest.raises(OSError, match="the disk went away"):
        for item in ahead(failing(), 2):
            got.append(item)
    assert got == [1, 2] and _prefetch_threads() == []


def test_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    closed_in: list[str] = []

    def endless():  # noqa: ANN202
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed_in.append(threading.current_thread().name)

    items = ahead(endless(), 2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert _prefetch_threads() == [] and closed_in == ["lab-prefetch"]


# ---- whole runs ---------------------------------------------------------------------------
TINY = dict(dataset="dig", image_size=16, epochs=1, batch_size=64, device="cpu", augment=True,
            cnn_channels=(8, 16), cnn_hidden=32, lr=3e-3, log_every=5, gradcam=0)
_CLOCK = {"time", "seconds", "images_per_s", "provenance", "data_on", "data_on_reason"}


def _numbers(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in _CLOCK} for e in events]


@pytest.mark.slow
def test_device_host_and_disk_train_to_the_same_numbers(lab_dirs: dict[str, Path]) -> None:
    _cache_digits(lab_dirs["data"])
    seen = {}
    for mode in MODES:
        run, result = start_run(level_config(3).replace(**TINY, data_on=mode), lab_dirs["runs"],
                                lab_dirs["data"])
        events = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
        assert events[0]["event"] == "start" and events[0]["data_on"] == mode
        assert result["data_on"] == mode == json.loads(run.result_path.read_text())["data_on"]
        seen[mode] = (_numbers(events), result["test_acc"], result["test_loss"],
                      result["confusion"], result["best_val_acc"])
    assert len(seen["device"][0]) > 3
    assert seen["device"] == seen["host"] == seen["disk"]  # bit for bit: == on floats


@pytest.mark.slow
@pytest.mark.parametrize(("budgets", "want"), [
    ({DEVICE_MEMORY_ENV: "100000"}, "host"),  # 1,797 images of 32x32x3 are 5.5 MB
    ({DEVICE_MEMORY_ENV: "100000", HOST_MEMORY_ENV: "100000"}, "disk"),
])
def test_a_set_over_the_budget_trains_from_host_or_disk(
        monkeypatch: pytest.MonkeyPatch, lab_dirs: dict[str, Path], budgets: dict[str, str],
        want: str) -> None:
    _cache_digits(lab_dirs["data"])
    for key, value in budgets.items():
        monkeypatch.setenv(key, value)
    shown = io.StringIO()
    printer = ProgressPrinter(Console(file=shown, width=400), "L3", rich_bar=False)
    events: list[dict] = []

    def emit(event: dict) -> None:
        events.append(event)
        printer(event)

    run, result = start_run(level_config(3).replace(**TINY), lab_dirs["runs"], lab_dirs["data"],
                            emit=emit)
    start = next(e for e in run.events() if e["event"] == "start")
    assert start["data_on"] == want == result["data_on"]
    assert "do not fit" in start["data_on_reason"] or "fit neither" in start["data_on_reason"]
    first = shown.getvalue().splitlines()[0]
    assert f"data on {want} (" in first and first.startswith("L3: 1200 train")

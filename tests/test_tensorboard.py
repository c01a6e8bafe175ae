"""TensorBoard event files read back with TensorBoard's own EventAccumulator (not our writer):
every number of metrics.jsonl, the per-class F1, the hparams and the Grad-CAM grid; written
afterwards by `lab tb export` and live by a run with tensorboard=true."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from lab.launch.tensorboard import export_run, tb_dir
from lab.runs import RunDir
from tests.cli_inprocess import one_click_command, run_cli
from tests.gradcam_data import write_picture_gallery
from tests.tui_runs import CLASSES, write_run

RUN = "20250301-100000-l3-0c03"
cli = pytest.fixture(scope="module")(one_click_command)


def accumulate(path: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0,
                                                        ea.TENSORS: 0})
    acc.Reload()
    return acc


def expected_scalars(run: RunDir) -> dict[str, list[tuple[int, float]]]:
    want: dict[str, list[tuple[int, float]]] = {}
    for line in run.metrics_path.read_text().splitlines():
        event = json.loads(line)
        for name, value in event.items():
            if name not in ("event", "epoch", "step") and type(value) in (int, float):
                want.setdefault(f"{event['event']}/{name}", []).append((event["step"], value))
    return want


def check(run: RunDir, acc: ea.EventAccumulator, *, grid: bool) -> None:
    want = expected_scalars(run)
    result = json.loads(run.result_path.read_text())
    for row in result["per_class"]:
        want[f"test/f1/{row['class']}"] = [(max(s for v in want.values() for s, _ in v),
                                            row["f1"])]
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
           if not tag.startswith("hparam/")}
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    config = run.config()
    assert start.hparams["lr"].number_value == pytest.approx(config.lr)
    assert start.hparams["model"].string_value == config.model
    assert [e.value for e in acc.Scalars("hparam/test_acc")] == pytest.approx(
        [result["test_acc"]])
    assert ("gradcam/grid" in acc.Tags()["images"]) == grid


def test_an_old_run_is_exported_from_its_records(tmp_path: Path) -> None:
    run = write_run(tmp_path, RUN, 3, epochs=3)
    write_picture_gallery(run.path, CLASSES, per_class=1)
    export_run(run)
    acc = accumulate(tb_dir(run))
    check(run, acc, grid=True)
    [image] = acc.Images("gradcam/grid")
    with Image.open(run.path / "gradcam" / "gradcam" / "grid.png") as grid:
        assert (image.width, image.height) == grid.size
    before = sorted(p.name for p in tb_dir(run).iterdir())
    export_run(run)  # again: replaced whole, not appended to
    assert len(sorted(p.name for p in tb_dir(run).iterdir())) == len(before)
    check(run, accumulate(tb_dir(run)), grid=True)


def test_the_cli_exports_every_finished_run_and_refuses_without_the_extra(
        tmp_path: Path, cli: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    done = write_run(tmp_path, RUN, 3, epochs=2)
    live = write_run(tmp_path, "20250301-110000-l3-0d04", 3, state="running", done_epochs=1)
    code, err = run_cli(["tb", "export", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0, err
    assert tb_dir(done).is_dir() and not tb_dir(live).exists()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, err = run_cli(["tb", "export", RUN, "--runs-dir", str(tmp_path)], capsys)
    assert code == 3 and "pip install 'cifar-lab-console[tensorboard]'" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_run_with_tensorboard_on_writes_them_as_it_trains(tmp_path: Path) -> None:
    from lab.launch.run import start_run
    from lab.levels import level_config

    config = level_config(3).replace(dataset="digits", image_size=16, epochs=2,
                                     cnn_channels=(8, 8, 16, 16), cnn_hidden=16, gradcam=1,
                                     log_every=5, tensorboard=True, device="cpu")
    run, _result = start_run(config, tmp_path / "runs", tmp_path / "data", progress="none")
    check(run, accumulate(tb_dir(run)), grid=True)
    pixels = np.asarray(Image.open(next((run.path / "gradcam").rglob("grid.png"))))
    assert pixels.ndim == 3

"""Grad-CAM: it points where the evidence is, its PNGs are real, and it cleans up after itself."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.core.models import CustomCNN, gradcam_target_layer
from lab.data import load_dataset
from lab.errors import ConfigError, NotFoundError
from lab.explain.gallery import explain_run
from lab.explain.gradcam import compute_cams, select_examples
from lab.explain.index import read_galleries
from lab.launch.run import start_run
from lab.levels import level_config
from lab.runs import new_run
from tests.gradcam_data import patch_box, write_patch_tree


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small CNN trained on data whose class is only the quadrant of a bright patch."""
    root = tmp_path_factory.mktemp("patches")
    tree = write_patch_tree(root / "tree")
    config = level_config(3).replace(
        dataset=f"imagefolder:{tree}", image_size=64, epochs=4, augment=False, lr=2e-3,
        cnn_channels=(8, 16, 32, 32), cnn_hidden=32, dropout=0.0, gradcam=10, device="cpu")
    run, result = start_run(config, root / "runs", root / "data")
    data = load_dataset(config.dataset, root / "data")
    return {"run": run, "result": result, "data": data, "data_dir": root / "data",
            "runs_dir": root / "runs"}


def _hit_rate(cams: np.ndarray, test_index: np.ndarray, test_x: np.ndarray, shift: int = 0,
              margin: int = 6) -> float:
    hits = 0
    for cam, i in zip(cams, test_index, strict=True):
        cam = np.roll(cam.astype(np.float32), (shift, shift), axis=(0, 1))
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        top, left, bottom, right = patch_box(test_x[i], margin)
        hits += int(top <= y <= bottom and left <= x <= right)
    return hits / len(cams)


@pytest.mark.slow
def test_cam_maximum_lies_on_the_patch(patch_run: dict) -> None:
    assert patch_run["result"]["test_acc"] >= 0.95  # the model did learn the patch rule
    cams = np.load(patch_run["run"].path / "gradcam" / "gradcam" / "cams.npz")
    assert cams["cams"].shape[1:] == (64, 64)
    test_x = patch_run["data"].test_x
    assert _hit_rate(cams["cams"], cams["test_index"], test_x) >= 0.8
    # the control: the same maps moved to another quadrant must fail the same check
    assert _hit_rate(cams["cams"], cams["test_index"], test_x, shift=32) <= 0.1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam++", "eigencam", "scorecam"])
def test_other_methods_on_demand(patch_run: dict, method: str) -> None:
    gallery = explain_run(patch_run["run"], patch_run["data_dir"], n=2, method=method)
    assert gallery["method"] == method and len(gallery["items"]) == 8  # 4 classes × 2, no wrong
    cams = np.load(patch_run["run"].path / "gradcam" / gallery["name"] / "cams.npz")
    assert np.isfinite(cams["cams"].astype(np.float32)).all()
    assert float(cams["cams"].min()) >= 0.0 and float(cams["cams"].max()) <= 1.0 + 1e-3
    names = [g["name"] for g in read_galleries(patch_run["run"].path / "gradcam")]
    assert gallery["name"] in names and "gradcam" in names  # galleries accumulate


@pytest.mark.slow
def test_gallery_files_are_real_pngs(patch_run: dict) -> None:
    folder = patch_run["run"].path / "gradcam" / "gradcam"
    index = json.loads((folder / "index.json").read_text())
    assert index["layer"] == "features.3" and index["method"] == "gradcam"
    assert len(index["items"]) == 40  # 4 classes × 10 right (the model makes no mistakes)
    for item in index["items"][:6]:
        png = Image.open(folder / item["file"])
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (262, 150)
        pixels = np.asarray(png)
        assert pixels.std() > 10  # not uniform
        left, right = pixels[:128, :128].astype(int), pixels[:128, 134:262].astype(int)
        assert np.abs(left - right).mean() > 10  # the overlay differs from the input
        assert set(item) >= {"file", "test_index", "true", "predicted", "confidence", "correct",
                             "method", "layer", "caption"}
    grid = Image.open(folder / "grid.png")
    assert grid.mode == "RGB" and grid.size[0] >= 8 * 112 and np.asarray(grid).std() > 10


def test_selection_is_deterministic_and_by_confidence() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 1, 1, 1, 0, 1])
    conf = np.array([0.5, 0.9, 0.8, 0.95, 0.7, 0.6, 0.7])
    picked = select_examples(y_true, y_pred, conf, 2, n=1)
    assert [(e.test_index, e.correct) for e in picked] == [(1, True), (3, False), (4, True),
                                                           (5, False)]  # tie 4/6 -> lower index
    wrong = select_examples(y_true, y_pred, conf, 2, n=5, only_class=0, wrong_only=True)
    assert [e.test_index for e in wrong] == [3, 2]


def test_hooks_are_released_after_many_calls() -> None:
    torch.manual_seed(0)
    model = CustomCNN(3, 32, channels=(4, 8, 8, 8), hidden=16).train()
    layer = gradcam_target_layer(model)
    images = torch.randn(4, 3, 32, 32)

    def hook_count() -> int:
        return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())

    before = hook_count()
    for method in ["gradcam", "gradcam++", "eigencam"] * 10:
        cams = compute_cams(model, layer, images, [0, 1, 2, 0], method)
        assert cams.shape == (4, 32, 32)
    assert hook_count() == before == 0
    assert model.training  # the CAM put it in eval mode; we restored it
    assert all(p.grad is None for p in model.parameters())
    gc.collect()
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    alive = [o for o in gc.get_objects() if type(o) is ActivationsAndGradients and o.handles]
    assert alive == []


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "120"})


@pytest.mark.slow
def test_gradcam_cli_errors_are_one_line_and_write_nothing(patch_run: dict,
                                                           tmp_path: Path) -> None:
    runs, data = patch_run["runs_dir"], patch_run["data_dir"]
    bare = new_run(runs, level_config(3))  # no checkpoint: never trained
    before = tree(runs)
    cases = [([bare.id], 3, "no checkpoint"),
             ([patch_run["run"].id, "--class", "q9"], 2, "not one of"),
             ([patch_run["run"].id, "--method", "magic"], 2, "unknown Grad-CAM method"),
             (["../x"], 2, "not a run id")]
    for args, code, message in cases:
        proc = lab("gradcam", *args, "--runs-dir", str(runs), "--data-dir", str(data))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code, proc.stderr
        assert len(lines) == 1 and message in lines[0], lines
    assert tree(runs) == before
    with pytest.raises(ConfigError):
        explain_run(patch_run["run"], data, n=0)
    with pytest.raises(NotFoundError):
        explain_run(bare, data)


@pytest.mark.slow
def test_gradcam_show_draws_in_the_terminal(patch_run: dict) -> None:
    runs = str(patch_run["runs_dir"])
    run_id = patch_run["run"].id
    grid = lab("gradcam", "show", run_id, "--mode", "halfcell", "--runs-dir", runs)
    assert grid.returncode == 0, grid.stderr
    assert "▀" in grid.stdout and "right (green)" in grid.stdout
    one = lab("gradcam", "show", run_id, "q1-correct-1.png", "--gallery", "gradcam",
              "--mode", "halfcell", "--width", "30", "--runs-dir", runs)
    assert one.returncode == 0, one.stderr
    assert "true q1, pred q1" in one.stdout
    missing = lab("gradcam", "show", run_id, "../../../etc/passwd", "--runs-dir", runs)
    assert missing.returncode == 3 and "no image" in missing.stderr

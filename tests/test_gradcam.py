"""Grad-CAM: it points where the evidence is, its PNGs are real, and it cleans up after itself."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from lab.core.models import CustomCNN, build_model
from lab.data import load_dataset
from lab.errors import ConfigError, NotFoundError
from lab.explain.gallery import explain_run
from lab.explain.gradcam import compute_cams, select_examples
from lab.explain.index import layer_text, read_galleries, read_gallery
from lab.explain.layers import MIN_SIDE, choose_layer, map_sizes
from lab.launch.run import start_run
from lab.levels import level_config
from lab.runs import atomic_write_json, new_run
from lab.views.progress import ProgressPrinter
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
    """The pointing game: the share of maps whose maximum lies on the patch (± margin)."""
    hits = 0
    for cam, i in zip(cams, test_index, strict=True):
        cam = np.roll(cam.astype(np.float32), (shift, shift), axis=(0, 1))
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        top, left, bottom, right = patch_box(test_x[i], margin)
        hits += int(top <= y <= bottom and left <= x <= right)
    return hits / len(cams)


def _mass_ratio(cams: np.ndarray, test_index: np.ndarray, test_x: np.ndarray,
                margin: int) -> float:
    """Median over maps of (share of the heat on the patch) / (share of the image it covers):
    1 is a map that knows nothing of where the patch is."""
    ratios = []
    for cam, i in zip(cams.astype(np.float32), test_index, strict=True):
        top, left, bottom, right = patch_box(test_x[i], margin)
        box = np.zeros(cam.shape, dtype=bool)
        box[max(top, 0):bottom + 1, max(left, 0):right + 1] = True
        ratios.append(cam[box].sum() / max(float(cam.sum()), 1e-9) / box.mean())
    return float(np.median(ratios))


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
    # 64 px: the blocks' maps are 32, 16, 8, 4 on a side; the deepest of at least 7 is chosen
    assert index["layer"] == "features.2" and index["layer_size"] == [8, 8]
    assert index["method"] == "gradcam"
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
    layer = choose_layer(model, 32).module
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
             ([patch_run["run"].id, "--weights", "worst"], 2,
              "--weights 'worst': must be one of last, best"),
             ([bare.id, "--weights", "best"], 3, "has no best.pt"),
             ([patch_run["run"].id, "--layer", "layer4"], 2,
              "not a Grad-CAM layer of this model: choose features.0 (32×32), features.1 "
              "(16×16), features.2 (8×8), features.3 (4×4)"),
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
@pytest.mark.parametrize("weights", ["best", "last", "last.pt"])
def test_a_gallery_explains_the_weights_asked_for(
        patch_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: str) -> None:
    """best.pt, the last checkpoint, or last.pt once the run is pruned (a copy of it)."""
    import shutil

    import lab.explain.gallery as gallery_module
    from lab.runs import RunDir
    from lab.runs.checkpoint import best_path, last_path
    from lab.runs.prune import prune

    run = patch_run["run"]
    if weights == "last.pt":
        run = RunDir(tmp_path / run.id)
        shutil.copytree(patch_run["run"].path, run.path)
        prune(run)
    expected = {"best": best_path(run), "last": run.checkpoint_path,
                "last.pt": last_path(run)}[weights]
    used: list[Path] = []
    real = gallery_module.load_model_state
    monkeypatch.setattr(gallery_module, "load_model_state",
                        lambda model, state, source: (used.append(source),
                                                      real(model, state, source)))
    made = explain_run(run, patch_run["data_dir"], n=1, weights=weights.removesuffix(".pt"))
    assert used == [expected] and made["items"]


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


# ---- the target layer, chosen by input size ----------------------------------------------------
LAYER_CASES = [  # (level, image size, chosen, its map side, every candidate's side)
    (3, 32, "features.1", 8, [16, 8, 4, 2]),  # the issue: features.3 is 2×2 at 32 px
    (3, 64, "features.2", 8, [32, 16, 8, 4]),
    pytest.param(3, 224, "features.3", 14, [112, 56, 28, 14], marks=pytest.mark.slow),
    (3, 16, "features.0", 8, [8, 4, 2, 1]),
    (1, 32, "layer1", 8, [8, 4, 2, 1]),  # ResNet18's layer4 is 1×1 at 32 px
    (1, 64, "layer2", 8, [16, 8, 4, 2]),
    pytest.param(1, 224, "layer4", 7, [56, 28, 14, 7], marks=pytest.mark.slow),  # the last
]


@pytest.mark.parametrize("level, size, name, side, sides", LAYER_CASES,
                         ids=["l3-32", "l3-64", "l3-224", "l3-16", "l1-32", "l1-64", "l1-224"])
def test_layer_is_the_deepest_with_a_big_enough_map(level: int, size: int, name: str, side: int,
                                                    sides: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(level_config(level).replace(weights="none", image_size=size), 10)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = map_sizes(model, size)
    assert [t.size for t in layers] == [(s, s) for s in sides]
    chosen = choose_layer(model, size)
    assert (chosen.name, chosen.size) == (name, (side, side))
    deeper = layers[[t.name for t in layers].index(name) + 1:]
    assert all(min(t.size) < MIN_SIDE for t in deeper)  # nothing deeper would have done
    assert dict(model.named_modules())[name] is chosen.module
    # measuring leaves the model as it was: mode, hooks, batch-norm statistics
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_named_layer_is_used_and_a_wrong_one_listed() -> None:
    model = CustomCNN(3, 32, channels=(4, 8, 8, 8), hidden=16)
    assert choose_layer(model, 32, "features.3").size == (2, 2)  # asked for: taken as is
    with pytest.raises(ConfigError) as wrong:
        choose_layer(model, 32, "layer4")
    assert str(wrong.value) == ("--layer 'layer4' is not a Grad-CAM layer of this model: choose "
                                "features.0 (16×16), features.1 (8×8), features.2 (4×4), "
                                "features.3 (2×2)")
    resnet = build_model(level_config(1).replace(weights="none", image_size=32), 3)
    with pytest.raises(ConfigError, match=r"choose layer1 \(8×8\), layer2 \(4×4\), "
                                          r"layer3 \(2×2\), layer4 \(1×1\)$"):
        choose_layer(resnet, 32, "features.1")


def test_an_index_from_before_layer_sizes_still_reads(tmp_path: Path) -> None:
    old = {"name": "gradcam", "method": "gradcam", "layer": "features.3", "grid": "grid.png",
           "created": "2025-01-01T00:00:00+00:00", "filter": {},
           "items": [{"file": "a-correct-1.png", "test_index": 0, "true": "a", "predicted": "a",
                      "confidence": 0.9, "correct": True, "caption": "true a, pred a, 90%"}]}
    (tmp_path / "gradcam").mkdir()
    atomic_write_json(tmp_path / "gradcam" / "index.json", old)
    atomic_write_json(tmp_path / "index.json", {"galleries": [
        {"name": "gradcam", "method": "gradcam", "layer": "features.3", "grid": None}]})
    gallery = read_gallery(tmp_path, "gradcam")
    assert gallery is not None and layer_text(gallery) == "features.3"
    assert layer_text(read_galleries(tmp_path)[0]) == "features.3"
    assert layer_text({**old, "layer_size": [8, 8]}) == "features.3 (8×8)"


@pytest.fixture(scope="module")
def run32(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The issue's size: 32 px, where the last block's map is 2×2. Noise images whose class is
    the quadrant of a small bright mark (5×5 of 32×32), so where the evidence is, is known."""
    root = tmp_path_factory.mktemp("patches32")
    tree = write_patch_tree(root / "tree", 50, 15, size=32, patch=5)
    config = level_config(3).replace(
        dataset=f"imagefolder:{tree}", image_size=32, epochs=3, augment=False, lr=3e-3,
        cnn_channels=(8, 16, 32, 32), cnn_hidden=32, dropout=0.0, gradcam=8, device="cpu")
    run, result = start_run(config, root / "runs", root / "data")
    return {"run": run, "result": result, "data_dir": root / "data",
            "test_x": load_dataset(config.dataset, root / "data").test_x}


def _cams(run32: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    saved = np.load(run32["run"].path / "gradcam" / name / "cams.npz")
    return saved["cams"], saved["test_index"]


@pytest.mark.slow
def test_pointing_game_at_32_px(run32: dict) -> None:
    assert run32["result"]["test_acc"] >= 0.9  # the model did learn where the mark is
    index = json.loads((run32["run"].path / "gradcam" / "gradcam" / "index.json").read_text())
    assert index["layer"] == "features.1" and index["layer_size"] == [8, 8]
    cams, test_index = _cams(run32, "gradcam")
    assert len(cams) == 32 and cams.shape[1:] == (32, 32)
    # chance for a 9×9 box in a 32×32 image is about 8%
    assert _hit_rate(cams, test_index, run32["test_x"], margin=2) >= 0.8
    assert _mass_ratio(cams, test_index, run32["test_x"], margin=2) >= 3
    assert _hit_rate(cams, test_index, run32["test_x"], shift=16, margin=2) <= 0.1  # control
    # the last block, the layer every gallery used before: four blobs that miss the mark
    last = explain_run(run32["run"], run32["data_dir"], n=8, layer="features.3", device="cpu")
    assert last["layer"] == "features.3" and last["layer_size"] == [2, 2]
    cams, test_index = _cams(run32, "gradcam")
    assert _hit_rate(cams, test_index, run32["test_x"], margin=2) <= 0.3


@pytest.mark.slow
def test_the_job_log_names_the_run(run32: dict) -> None:
    """The end-of-run gallery's line says how to see it, with this run's id (it said RUN)."""
    printed = io.StringIO()
    log = ProgressPrinter(Console(file=printed, width=200), "job 7 L3", rich_bar=False)
    run = run32["run"]
    config = run.config().replace(epochs=1, gradcam=1)
    runs_dir = run.path.parent
    with log:
        again, _ = start_run(config, runs_dir, run32["data_dir"], emit=log)
    lines = [line for line in printed.getvalue().splitlines() if "Grad-CAM" in line]
    assert len(lines) == 1 and re.fullmatch(
        rf"job 7 L3 Grad-CAM gallery: \d+ images on features\.1 "
        rf"\(see it: lab gradcam show {again.id}\)", lines[0]), lines

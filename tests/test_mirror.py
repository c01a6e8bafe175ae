"""Whether a run mirrors images: one decision (the data set's declaration, the config's hflip)
that governs flip augmentation, flip TTA at validation and test, and what the run records.

The defect this guards against: `--recipe tuned --set hflip=0` on a set whose classes are left
and right positions validated at 100% and tested at ~50%, because only the test averaged each
image with its mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.core.evaluate import evaluate, evaluate_part
from lab.core.hooks import Position
from lab.core.loop import fit
from lab.core.parts import Parts
from lab.core.prepare import Prepared, prepare_data
from lab.data import import_data, list_datasets, load_dataset
from lab.data.loader import DeviceLoader
from lab.data.mirror import Mirror, decide_mirror
from lab.levels import recipe_config
from lab.runs import check_event, check_result
from tests.fakes import write_image_tree
from tests.test_hooks import Recorder, _parts

# ---- the decision, table-driven over (declaration x hflip x recipe) ---------------------------
DECLARATIONS = {"declared safe": True, "declared not safe": False, "old manifest": None}
# (level, recipe): with and without augmentation, with and without flip TTA
RECIPES = {"L1 seed": (1, "seed"), "L3 seed": (3, "seed"), "L1 tuned": (1, "tuned"),
           "L3 tuned": (3, "tuned")}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny image folder imported three ways: safe, --no-mirror, and a manifest from before
    the declaration existed (the key removed)."""
    root = tmp_path_factory.mktemp("mirror")
    write_image_tree(root / "tree", classes=("a", "b"), per_class=10, per_class_test=2)
    dirs = {}
    for label, declared in DECLARATIONS.items():
        data_dir = root / label.replace(" ", "-")
        import_data(root / "tree", data_dir, name="tiny", mirror_safe=declared is not False)
        if declared is None:
            path = data_dir / "tiny" / "manifest.json"
            manifest = json.loads(path.read_text())
            del manifest["mirror_safe"]
            path.write_text(json.dumps(manifest))
        dirs[label] = data_dir
    return dirs


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("hflip", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("declaration", DECLARATIONS)
def test_one_decision_governs_training_flips_tta_and_the_record(
        data_dirs: dict[str, Path], declaration: str, hflip: float, recipe: str) -> None:
    level, name = RECIPES[recipe]
    config = recipe_config(level, name).replace(
        dataset="tiny", image_size=16, device="cpu", batch_size=4, hflip=hflip)
    # the rule: mirroring is safe unless the data set says it is not, or the person (hflip=0)
    ok = DECLARATIONS[declaration] is not False and hflip > 0
    prepared = prepare_data(config, data_dirs[declaration], torch.device("cpu"))

    train_flip = prepared.train.augment.hflip if prepared.train.augment is not None else 0.0
    assert train_flip == (hflip if ok and config.augment else 0.0)
    assert prepared.tta_flip == (ok and config.tta_flip)  # validation and test alike
    assert prepared.mirror is not None
    record = prepared.mirror.record()
    assert (record["ok"], record["hflip"], record["tta"]) == (ok, train_flip, prepared.tta_flip)
    assert record["reason"]
    # flips the config asks for and does not get are said in the run's notes (hflip=0 turning
    # off the flip augmentation is the person's own word and needs no note)
    lost_augment = config.augment and hflip > 0 and not ok
    lost_tta = config.tta_flip and not ok
    turned_off = [n for n in prepared.notes if " off: " in n]
    assert bool(turned_off) == (lost_augment or lost_tta), prepared.notes
    assert ("flip" in prepared.augmentation) == (train_flip > 0)


@pytest.mark.parametrize("level, recipe, note", [
    (3, "seed", "horizontal flip off: digits classes are not mirror-symmetric"),  # as it was
    (3, "tuned", "horizontal flip and flip TTA off: digits classes are not mirror-symmetric"),
    (1, "tuned", "flip TTA off: digits classes are not mirror-symmetric"),
    (1, "seed", None),
])
def test_a_set_declared_not_mirror_safe_wins_over_the_presets_flips_with_a_note(
        level: int, recipe: str, note: str | None) -> None:
    """Not refused: every preset asks for flips (hflip=0.5), and must run on every data set."""
    mirror = decide_mirror(recipe_config(level, recipe), {"name": "digits", "mirror_safe": False})
    assert (mirror.ok, mirror.hflip, mirror.tta, mirror.note) == (False, 0.0, False, note)


@pytest.mark.parametrize("record", [
    {"ok": False, "reason": "x", "hflip": 0.0, "tta": False},
    {"ok": True},
])
def test_the_mirror_record_reads_and_old_records_without_it_still_do(record: dict) -> None:
    result = {"test_acc": 0.5, "classes": ["a", "b"], "per_class": [],
              "confusion": [[1, 0], [0, 1]], "most_confused": []}
    assert check_result(result) is None  # written before the decision was recorded
    assert check_result({**result, "mirror": record}) is None
    assert check_result({**result, "mirror": False}) is not None
    assert check_event({"event": "start", "epoch": 0, "mirror": record}) is None
    assert check_event({"event": "start", "epoch": 0, "mirror": "no"}) is not None


# ---- the declaration, through the Python API ---------------------------------------------------
def test_no_mirror_import_is_recorded_in_the_manifest_and_listed(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "tree", classes=("a", "b"), per_class=2, per_class_test=1)
    data_dir = tmp_path / "data"
    assert import_data(tmp_path / "tree", data_dir, name="plain")["mirror_safe"] is True
    assert import_data(tmp_path / "tree", data_dir, name="lr", mirror_safe=False)[
        "mirror_safe"] is False
    listed = {m["name"]: m.get("mirror_safe") for m in list_datasets(data_dir)}
    assert listed == {"lr": False, "plain": True}
    assert load_dataset("lr", data_dir).manifest["mirror_safe"] is False


# ---- validation and test: one evaluation path ----------------------------------------------------
def _same_val_and_test(tta: bool) -> tuple[Parts, Prepared]:
    parts = _parts()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, 12)

    def loader(shuffle: bool) -> DeviceLoader:
        return DeviceLoader.from_numpy(x, y, "cpu", batch_size=4, image_size=8, shuffle=shuffle)

    mirror = Mirror(ok=tta, reason="test", hflip=0.0, tta=tta)
    return parts, Prepared(data=None, split=None, train=loader(True),  # type: ignore[arg-type]
                           val=loader(False), test=loader(False), test_labels=y, test_x=x,
                           notes=[], augmentation="none", train_images=12, mirror=mirror)


@pytest.mark.parametrize("tta", [False, True])
def test_identical_data_as_validation_and_as_test_gives_identical_metrics(tta: bool) -> None:
    parts, data = _same_val_and_test(tta)
    rec = Recorder()
    fit(parts, data, Position(), 1, rec)
    epoch = next(e for kind, e in rec.calls if kind == "event" and e["event"] == "epoch")
    test = evaluate_part(parts, data, "test", want_predictions=True)
    assert (epoch["val_loss"], epoch["val_acc"]) == (test["loss"], test["acc"])
    # and the TTA setting really is the one applied (the plain and mirrored passes differ here)
    plain = evaluate(parts.eval_net, data.test, None)
    assert (test["loss"] == plain["loss"]) == (not tta)


# ---- end to end: the left/right folder ----------------------------------------------
def _left_right_tree(root: Path, per_class: int = 100, size: int = 32) -> None:
    """Classes told apart only by which half holds a bright square: a mirror swaps them."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for side in ("left", "right"):
            folder = root / split / side
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                top = rng.integers(2, size - 10)
                lo = 2 if side == "left" else size // 2 + 2
                left = rng.integers(lo, lo + size // 2 - 12)
                img[top:top + 8, left:left + 8] = 255
                Image.fromarray(img).save(folder / f"{i:03d}.png")


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "160"})


@pytest.mark.slow
@pytest.mark.parametrize("declare, overrides", [
    (["--no-mirror"], []),  # the data set says so, the tuned recipe's flips are turned off
    ([], ["--set", "hflip=0"]),  # the command: the person says so
], ids=["no-mirror-import", "hflip-0"])
def test_left_right_classes_test_as_they_validate(tmp_path: Path, declare: list[str],
                                                  overrides: list[str]) -> None:
    _left_right_tree(tmp_path / "lr")
    data, runs = tmp_path / "data", tmp_path / "runs"
    imported = _lab("data", "import", str(tmp_path / "lr"), "--name", "lr", *declare,
                    "--data-dir", str(data))
    assert imported.returncode == 0, imported.stderr
    assert ("not mirror-safe" in imported.stdout) == bool(declare)
    listed = _lab("data", "info", "--json", "--data-dir", str(data))
    manifest, = json.loads(listed.stdout)["datasets"]
    assert manifest["mirror_safe"] is not bool(declare)

    proc = _lab("run", "--level", "3", "--recipe", "tuned", "--dataset", "lr", "--epochs", "4",
                "--batch-size", "16", "--set", "gradcam=0", *overrides, "--json",
                "--runs-dir", str(runs), "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["best_val_acc"] >= 0.9, proc.stderr
    assert result["test_acc"] >= result["best_val_acc"] - 0.1, (result["test_acc"], proc.stderr)
    assert result["mirror"]["ok"] is False
    assert (result["mirror"]["hflip"], result["mirror"]["tta"]) == (0.0, False)
    assert "flip" not in result["augmentation"]
    start = json.loads((runs / result["run_id"] / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["mirror"] == result["mirror"]

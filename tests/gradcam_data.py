"""Data whose class is decided only by where a bright patch sits (one quadrant per class), and a
Grad-CAM gallery made by the real writer without training (for the views)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE, PATCH = 64, 16


def patch_image(rng: np.random.Generator, quadrant: int, size: int = SIZE,
                patch: int = PATCH) -> np.ndarray:
    image = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    edge = max(1, min(2, (half - patch) // 2))  # keep the patch inside its quadrant
    top = (quadrant // 2) * half + int(rng.integers(edge, half - patch - edge + 1))
    left = (quadrant % 2) * half + int(rng.integers(edge, half - patch - edge + 1))
    image[top:top + patch, left:left + patch] = 255
    return image


def write_patch_tree(root: Path, train_per_class: int = 80, test_per_class: int = 25,
                     seed: int = 0, size: int = SIZE, patch: int = PATCH) -> Path:
    rng = np.random.default_rng(seed)
    for part, count in (("train", train_per_class), ("test", test_per_class)):
        for q in range(4):
            folder = root / part / f"q{q}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(patch_image(rng, q, size, patch)).save(folder / f"{i:03d}.png")
    return root


def patch_box(image: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the saturated patch, grown by margin pixels."""
    ys, xs = np.nonzero((image == 255).all(axis=2))
    return ys.min() - margin, xs.min() - margin, ys.max() + margin, xs.max() + margin


def write_picture_gallery(run_path: Path, classes: list[str], per_class: int = 2,
                          layer: str = "features.1", layer_size: list[int] | None = None,
                          ) -> dict[str, Any]:
    """A gallery in `run_path` as `write_gallery` lays it out (index, 262×150 example PNGs, a
    grid of 8 columns), with pictures drawn by Pillow: the views need no torch to be tested.
    Each picture is a left-to-right ramp, so a stretched rendering shows in its shape only."""
    from lab.explain.index import entry_of
    from lab.runs import atomic_write_json

    folder = run_path / "gradcam" / "gradcam"
    folder.mkdir(parents=True)
    tile, grid_tile = 128, 112  # lab.explain.gradcam's TILE and GRID_TILE (it imports torch)
    ramp = np.linspace(0, 255, 2 * tile + 6, dtype=np.uint8)
    items = []
    for k in range(per_class * len(classes)):
        true, predicted = classes[k % len(classes)], classes[(k + k // len(classes)) % len(classes)]
        correct = true == predicted
        file = f"{true}-{'correct' if correct else 'wrong'}-{k}.png"
        pixels = np.stack([np.tile(ramp, (tile + 22, 1))] * 3, axis=2)
        pixels[:, :, 2] = 40 * (k % 6)
        Image.fromarray(pixels).save(folder / file)
        confidence = round(0.5 + 0.4 * k / (per_class * len(classes)), 4)
        items.append({"file": file, "test_index": k, "true": true, "predicted": predicted,
                      "confidence": confidence, "correct": correct, "method": "gradcam",
                      "layer": layer, "caption": f"true {true}, pred {predicted}, "
                                                 f"{100 * confidence:.0f}%"})
    rows = -(-len(items) // 8)
    Image.new("RGB", (8 * (grid_tile + 8), rows * (grid_tile + 22)), (90, 30, 30)).save(
        folder / "grid.png")
    index = {"name": "gradcam", "method": "gradcam", "layer": layer,
             "layer_size": layer_size or [8, 8], "grid": "grid.png",
             "created": "2025-03-01T10:30:00+00:00",
             "filter": {"class": None, "wrong_only": False}, "items": items}
    atomic_write_json(folder / "index.json", index)
    atomic_write_json(run_path / "gradcam" / "index.json", {"galleries": [entry_of(index)]})
    return index

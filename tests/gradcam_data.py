"""A data set whose class is decided only by where a bright patch sits (one quadrant per class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE, PATCH = 64, 16


def patch_image(rng: np.random.Generator, quadrant: int) -> np.ndarray:
    image = rng.integers(0, 90, size=(SIZE, SIZE, 3), dtype=np.uint8)
    half = SIZE // 2
    top = (quadrant // 2) * half + int(rng.integers(2, half - PATCH - 2))
    left = (quadrant % 2) * half + int(rng.integers(2, half - PATCH - 2))
    image[top:top + PATCH, left:left + PATCH] = 255
    return image


def write_patch_tree(root: Path, train_per_class: int = 80, test_per_class: int = 25,
                     seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for part, count in (("train", train_per_class), ("test", test_per_class)):
        for q in range(4):
            folder = root / part / f"q{q}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(patch_image(rng, q)).save(folder / f"{i:03d}.png")
    return root


def patch_box(image: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the saturated patch, grown by margin pixels."""
    ys, xs = np.nonzero((image == 255).all(axis=2))
    return ys.min() - margin, xs.min() - margin, ys.max() + margin, xs.max() + margin

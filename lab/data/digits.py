"""scikit-learn's bundled handwritten digits, shaped like CIFAR so every model runs on it.

It ships inside scikit-learn, so tests, demos and CI have real images without a download or a
cache, and a whole experiment on it takes seconds on a CPU.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from lab.data.store import Dataset
from lab.errors import DataError

SIZE = 32


def _upscale(gray: np.ndarray) -> np.ndarray:
    # Bilinear, not nearest: nearest turns each 8x8 pixel into a hard-edged 4x4 block, and the
    # CNNs (3x3 filters, built for natural images) learn those block edges more slowly than
    # smooth strokes. Measured: Level 3, 3 epochs, 5 seeds, test accuracy 0.78 -> 0.85 on average.
    return np.stack(
        [
            np.asarray(Image.fromarray(g).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
            for g in gray
        ]
    )


def _digits_table() -> np.ndarray:
    """The rows of scikit-learn's `digits.csv.gz` (64 pixels, then the label), read as its
    `load_digits` reads them, but found without importing scikit-learn: that import (scipy
    with it) cost each run process about 2 s of CPU before its first step."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0] if folders else ".") / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"scikit-learn's digits are not at {path}",
                        hint="reinstall scikit-learn (pip install scikit-learn)")
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        return np.loadtxt(f, delimiter=",")


def load_digits_dataset() -> Dataset:
    """1,797 digits as (N, 32, 32, 3) uint8; there is no official test split (test_x is None)."""
    table = _digits_table()
    values = np.ascontiguousarray(table[:, :-1]).reshape(-1, 8, 8)  # (1797, 8, 8), 0..16
    gray = np.rint(values * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = np.ascontiguousarray(np.repeat(_upscale(gray)[..., None], 3, axis=3))
    y = table[:, -1].astype(np.int64)
    manifest = {
        "manifest_version": 1,
        "name": "digits",
        "classes": [str(i) for i in range(10)],
        "source": "sklearn.datasets.load_digits",
        "source_sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "official": True,
        "official_reason": "bundled with scikit-learn (load_digits), used as shipped",
        "counts": {"train": int(len(y)), "test": 0},
        "image_size": [SIZE, SIZE],
        "format": "sklearn",
        # of the arrays' bytes: this set is built in memory and has no data.npz
        "data_sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(),
        "created": None,
        "resized": {"to": [SIZE, SIZE], "why": "8x8 scaled to 0..255 and upscaled (bilinear)"},
        "source_fingerprint": None,
        # A mirrored 2, 3 or 7 is not that digit: horizontal flips would teach wrong labels
        # (Level 3 on digits: 87% with flips, 96% without). The engine reads this flag.
        "mirror_safe": False,
    }
    return Dataset(
        name="digits",
        classes=manifest["classes"],
        train_x=x,
        train_y=y,
        test_x=None,
        test_y=None,
        manifest=manifest,
    )

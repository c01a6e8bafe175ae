"""Train/validation/test index splits that are stratified, seeded and checkable.

Runs compare fairly only on the same split, so a split is a pure function of (labels, fractions,
seed), and its fingerprint is stored with each run to prove two runs saw the same images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lab.errors import ConfigError


@dataclass
class Split:
    """Index arrays into the training pool (``train_x``)."""

    train: np.ndarray  # int64, sorted
    val: np.ndarray
    test: np.ndarray | None  # None when the set has an official test split (use test_x)

    def fingerprint(self) -> str:
        """16 hex digits of sha256 over the indices: equal iff the splits are identical."""
        digest = hashlib.sha256()
        for part, idx in (("train", self.train), ("val", self.val), ("test", self.test)):
            digest.update(part.encode())
            if idx is None:
                digest.update(b"none")
            else:
                arr = np.ascontiguousarray(idx, dtype="<i8")
                digest.update(len(arr).to_bytes(8, "little"))
                digest.update(arr.tobytes())
        return digest.hexdigest()[:16]


def _check_fractions(train_fraction: float, val_fraction: float, has_test: bool) -> None:
    if not 0 < train_fraction <= 1:
        raise ConfigError(f"train fraction must be in (0, 1], not {train_fraction}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val fraction must be in [0, 1), not {val_fraction}")
    total = train_fraction + val_fraction
    if total > 1 + 1e-9:
        raise ConfigError(
            f"train + val fractions are {total:g}, more than 1", hint="lower one of them"
        )
    if not has_test and total >= 1 - 1e-9:
        raise ConfigError(
            f"train + val fractions are {total:g}, leaving nothing to test on",
            hint="this dataset has no official test split; keep train + val below 1",
        )


def make_split(
    labels: np.ndarray, has_test: bool, train_fraction: float, val_fraction: float, seed: int,
    official_val: int = 0,
) -> Split:
    """Stratified split: each class keeps its share in train, val and (without a test set) test.

    ``official_val``: the pool's last images are the data set's own validation split (an
    imported val/), used as it is. Then nothing else validates: with a test split every other
    image trains, without one the test share (1 - train - val fractions) is still carved out."""
    _check_fractions(train_fraction, val_fraction, has_test)
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ConfigError(f"labels must be a 1-D integer array, not {y.dtype} {y.shape}")
    if not 0 <= official_val <= len(y):
        raise ConfigError(f"official_val must be in 0..{len(y)}, not {official_val}")
    if official_val:
        pool = len(y) - official_val
        val = np.arange(pool, len(y), dtype=np.int64)
        if has_test:
            return Split(train=np.arange(pool, dtype=np.int64), val=val, test=None)
        rest = make_split(y[:pool], False, train_fraction + val_fraction, 0.0, seed)
        return Split(train=rest.train, val=val, test=rest.test)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n = len(idx)
        n_train = min(n, round(n * train_fraction))
        n_val = min(n - n_train, round(n * val_fraction))
        train.append(idx[:n_train])
        val.append(idx[n_train : n_train + n_val])
        test.append(idx[n_train + n_val :])

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    return Split(train=joined(train), val=joined(val), test=None if has_test else joined(test))

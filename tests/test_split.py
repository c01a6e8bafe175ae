"""Stratified, seeded splits: the property every fair comparison between runs rests on."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data import Split, make_split
from lab.errors import ConfigError


def cifar_like_labels(per_class: int = 5000, n_classes: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(n_classes), per_class)).astype(np.int64)


def test_cifar_sizes_with_official_test_split() -> None:
    labels = cifar_like_labels()
    split = make_split(labels, has_test=True, train_fraction=0.8, val_fraction=0.1, seed=0)
    assert len(split.train) == 40_000 and len(split.val) == 5_000
    assert split.test is None
    assert not np.intersect1d(split.train, split.val).size
    # stratified: every class keeps exactly its share
    assert np.bincount(labels[split.train]).tolist() == [4000] * 10
    assert np.bincount(labels[split.val]).tolist() == [500] * 10


def test_without_test_split_the_rest_is_test_and_all_disjoint() -> None:
    labels = np.repeat(np.arange(3), [10, 21, 7])
    split = make_split(labels, has_test=False, train_fraction=0.6, val_fraction=0.2, seed=4)
    assert split.test is not None
    parts = [split.train, split.val, split.test]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined) == len(labels)  # disjoint and complete
    for part in parts:
        assert part.dtype == np.int64
        assert (np.diff(part) > 0).all()  # sorted
    for cls, n in enumerate([10, 21, 7]):
        assert (labels[split.train] == cls).sum() == round(n * 0.6)
        assert (labels[split.val] == cls).sum() == round(n * 0.2)


def test_same_seed_same_split_other_seed_differs() -> None:
    labels = cifar_like_labels(per_class=200)
    a = make_split(labels, True, 0.8, 0.1, seed=7)
    b = make_split(labels, True, 0.8, 0.1, seed=7)
    c = make_split(labels, True, 0.8, 0.1, seed=8)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.train, c.train)
    assert a.fingerprint() != c.fingerprint()


def test_fingerprint_is_short_stable_and_sensitive() -> None:
    s = Split(np.array([0, 2, 4]), np.array([1]), np.array([3]))
    assert s.fingerprint() == Split(np.array([0, 2, 4]), np.array([1]), np.array([3])).fingerprint()
    assert len(s.fingerprint()) == 16 and int(s.fingerprint(), 16) >= 0
    # moving one index between parts, or dropping test, must change it
    assert s.fingerprint() != Split(np.array([0, 2]), np.array([1, 4]), np.array([3])).fingerprint()
    assert s.fingerprint() != Split(np.array([0, 2, 4]), np.array([1]), None).fingerprint()
    # the index dtype must not matter, only the values
    assert (
        s.fingerprint()
        == Split(np.array([0, 2, 4], dtype=np.int32), np.array([1]), np.array([3])).fingerprint()
    )


@pytest.mark.parametrize(
    ("train", "val", "has_test"),
    [(0.0, 0.1, True), (-0.1, 0.1, True), (0.8, -0.1, True), (0.8, 0.3, True), (0.9, 0.1, False)],
)
def test_bad_fractions_are_config_errors(train: float, val: float, has_test: bool) -> None:
    with pytest.raises(ConfigError):
        make_split(np.zeros(10, dtype=np.int64), has_test, train, val, seed=0)


def test_train_plus_val_may_be_one_with_an_official_test_split() -> None:
    labels = np.repeat(np.arange(2), 10)
    split = make_split(labels, True, 0.9, 0.1, seed=0)
    assert len(split.train) + len(split.val) == 20

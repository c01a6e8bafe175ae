"""Generators for small, deterministic data sets in the formats lab imports.

Tests need real files in the real formats (pickled CIFAR batches, tarballs, PNG trees) without the
real 170 MB download; these write them in milliseconds and return the exact pixels written, so a
test can compare what was imported against what was meant.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass
class FakeSet:
    """What a generator wrote: HWC uint8 images and int64 labels, in import order."""

    classes: list[str]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    path: Path | None = None


def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def cifar_arrays(
    classes: Sequence[str] = CIFAR10_CLASSES,
    per_class: int = 5,
    per_class_test: int = 2,
    size: int = 32,
    seed: int = 0,
) -> FakeSet:
    """Random images for a CIFAR-format set; labels interleaved as in the real batches."""
    rng = np.random.default_rng(seed)
    n_cls = len(classes)
    train_y = np.tile(np.arange(n_cls, dtype=np.int64), per_class)
    test_y = np.tile(np.arange(n_cls, dtype=np.int64), per_class_test)
    return FakeSet(
        classes=list(classes),
        train_x=_images(rng, len(train_y), size, size),
        train_y=train_y,
        test_x=_images(rng, len(test_y), size, size),
        test_y=test_y,
    )


def planar_rows(x: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> the official (N, 3*H*W) rows: all red, then green, then blue."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))


def batch_pickle(rows: np.ndarray, labels: Sequence[int], protocol: int = 2) -> bytes:
    """One batch file as the official ones are laid out (bytes keys, list labels)."""
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in labels],
        b"data": rows,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=protocol)


def meta_pickle(classes: Sequence[str], num_vis: int = 3072) -> bytes:
    meta = {
        b"label_names": [c.encode() for c in classes],
        b"num_cases_per_batch": 10000,
        b"num_vis": num_vis,
    }
    return pickle.dumps(meta, protocol=2)


def cifar_files(fake: FakeSet) -> dict[str, bytes]:
    """The seven files of the batches folder; training images split evenly over five batches."""
    rows = planar_rows(fake.train_x)
    parts = np.array_split(np.arange(len(rows)), len(TRAIN_BATCHES))
    files = {
        name: batch_pickle(rows[idx], fake.train_y[idx])
        for name, idx in zip(TRAIN_BATCHES, parts, strict=True)
    }
    assert fake.test_x is not None and fake.test_y is not None
    files["test_batch"] = batch_pickle(planar_rows(fake.test_x), fake.test_y)
    files["batches.meta"] = meta_pickle(fake.classes, rows.shape[1])
    return files


def write_cifar_dir(
    parent: Path, fake: FakeSet | None = None, replace: dict[str, bytes] | None = None
) -> FakeSet:
    """Write ``parent/cifar-10-batches-py/``; ``replace`` swaps in hand-made file contents."""
    fake = fake or cifar_arrays()
    batch_dir = parent / BATCH_DIR
    batch_dir.mkdir(parents=True, exist_ok=True)
    for name, blob in (cifar_files(fake) | (replace or {})).items():
        (batch_dir / name).write_bytes(blob)
    (batch_dir / "readme.html").write_text("<p>fake CIFAR-10 for tests</p>")
    fake.path = batch_dir
    return fake


def write_cifar_tarball(
    path: Path, fake: FakeSet | None = None, replace: dict[str, bytes] | None = None
) -> FakeSet:
    """Write a ``cifar-10-python.tar.gz``-style archive (members under cifar-10-batches-py/)."""
    fake = fake or cifar_arrays()
    files = cifar_files(fake) | (replace or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(BATCH_DIR)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tf.addfile(info)
        for name, blob in [*files.items(), ("readme.html", b"<p>fake</p>")]:
            _add_bytes(tf, f"{BATCH_DIR}/{name}", blob)
    fake.path = path
    return fake


def _add_bytes(tf: tarfile.TarFile, name: str, blob: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(blob))


def write_image_tree(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "fish"),
    per_class: int = 3,
    per_class_test: int = 1,
    size: int | tuple[int, int] | Sequence[tuple[int, int]] = 8,
    ext: str = ".png",
    seed: int = 0,
) -> FakeSet:
    """Write ``root/train/<class>/NNNN<ext>`` (and ``test/`` when per_class_test > 0).

    ``size`` is a side, an (H, W), or a list of (H, W) cycled over images to make mixed sizes.
    Returned arrays are in the importer's order (class, then file name); with PNG they are exact.
    """
    rng = np.random.default_rng(seed)
    if isinstance(size, int):
        sizes: list[tuple[int, int]] = [(size, size)]
    elif len(size) == 2 and all(isinstance(v, int) for v in size):
        sizes = [(int(size[0]), int(size[1]))]  # type: ignore[arg-type]
    else:
        sizes = [tuple(s) for s in size]  # type: ignore[misc]
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    counter = 0
    splits = [("train", per_class)] + ([("test", per_class_test)] if per_class_test else [])
    for split, n in splits:
        xs: list[np.ndarray] = []
        ys: list[int] = []
        for label, cls in enumerate(sorted(classes)):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = sizes[counter % len(sizes)]
                counter += 1
                img = _images(rng, 1, h, w)[0]
                Image.fromarray(img).save(folder / f"{i:04d}{ext}")
                xs.append(img)
                ys.append(label)
        out[split] = (xs, ys)

    def stacked(split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if split not in out:
            return None, None
        xs, ys = out[split]
        same = len({x.shape for x in xs}) == 1
        return (np.stack(xs) if same else None), np.asarray(ys, dtype=np.int64)

    train_x, train_y = stacked("train")
    test_x, test_y = stacked("test")
    return FakeSet(sorted(classes), train_x, train_y, test_x, test_y, root)  # type: ignore[arg-type]


def pack(tree: Path, archive: Path, wrapper: str | None = None) -> Path:
    """Pack a tree's contents as .zip, .tar, .tar.gz/.tgz or .tar.xz, optionally in one folder."""
    name = archive.name
    files = sorted(p for p in tree.rglob("*"))
    prefix = f"{wrapper}/" if wrapper else ""
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, prefix + p.relative_to(tree).as_posix())
        return archive
    mode = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.xz": "w:xz"}
    suffix = next(s for s in (".tar.gz", ".tar.xz", ".tgz", ".tar") if name.endswith(s))
    with tarfile.open(archive, mode[suffix]) as tf:
        for p in files:
            tf.add(p, prefix + p.relative_to(tree).as_posix(), recursive=False)
    return archive


class Exploit:
    """Unpickling this runs ``os.system(command)``: the attack the safe unpickler must stop."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (self.command,))


def malicious_batch(command: str) -> bytes:
    """A batch-shaped pickle whose 'data' would run a shell command when loaded naively."""
    return pickle.dumps({b"data": Exploit(command), b"labels": [0]}, protocol=2)

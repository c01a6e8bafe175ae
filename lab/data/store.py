"""The on-disk cache: one verified copy of each data set under ``data_dir/<name>/``.

Imports are slow (decoding tens of thousands of images), so each data set is decoded once into
``data.npz`` and described by ``manifest.json``; every later run loads the arrays directly and can
prove, through the recorded hashes, that it trained on exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import ConfigError, DataError, NotFoundError
from lab.paths import default_data_dir as default_data_dir  # the package exports it
from lab.shapes import ANY, BOOL, COUNT, STR, Int, ListOf, Maybe, Obj, problem

MANIFEST = "manifest.json"
DATA = "data.npz"
MANIFEST_VERSION = 1
# Names become directory names and CLI arguments, so keep them to a portable, shell-safe set.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Specs the loader resolves without the cache; a cached set with one of these names could never
# be loaded.
RESERVED_NAMES = frozenset({"digits"})
_FETCH_HINT = "run `lab data fetch` or `lab data import PATH`"


@dataclass
class Dataset:
    """A data set held in memory as uint8 arrays."""

    name: str
    classes: list[str]
    train_x: np.ndarray  # (N, H, W, 3) uint8, all images one size
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray | None  # None when the set has no official test split
    test_y: np.ndarray | None
    manifest: dict


@dataclass
class Imported:
    """What a reader hands the store: the arrays plus the provenance the manifest must record."""

    classes: list[str]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    source: str
    source_sha256: str
    official: bool
    official_reason: str
    format: str
    default_name: str
    extra: dict[str, Any] = field(default_factory=dict)


def check_name(name: str) -> str:
    """Reject names that would escape data_dir or clash with built-in specs, before any work."""
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"'{name}' is not a valid dataset name",
            hint="use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"'{name}' is a built-in dataset name", hint="pick another --name")
    return name


def safe_name(stem: str) -> str:
    """Turn a folder or archive stem into a valid default name, so odd file names still import."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64] or "dataset"
    return cleaned + "-set" if cleaned in RESERVED_NAMES else cleaned


def file_digests(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hash a file once for several algorithms; archives are read in one pass, not one per hash."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the renames durable; some filesystems refuse it, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(data_dir: Path, name: str, imp: Imported) -> dict:
    """Write the set atomically; an existing copy is replaced only once the new one is complete."""
    check_name(name)
    _check_arrays(imp.train_x, imp.train_y, imp.test_x, imp.test_y, len(imp.classes))
    data_dir.mkdir(parents=True, exist_ok=True)
    # Named first, made inside the try: a signal at any moment either finds no folder or one
    # the handler below removes (mkdtemp could be interrupted after making it, before naming it).
    staging = data_dir / f".tmp-{name}-{secrets.token_hex(6)}"
    try:
        staging.mkdir(mode=0o755)
        os.chmod(staging, 0o755)  # whatever the umask: the cache is an ordinary folder
        arrays = {"train_x": imp.train_x, "train_y": imp.train_y}
        if imp.test_x is not None and imp.test_y is not None:
            arrays |= {"test_x": imp.test_x, "test_y": imp.test_y}
        with open(staging / DATA, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "name": name,
            "classes": list(imp.classes),
            "source": imp.source,
            "source_sha256": imp.source_sha256,
            "official": imp.official,
            "official_reason": imp.official_reason,
            "counts": {
                "train": int(len(imp.train_y)),
                "test": int(len(imp.test_y)) if imp.test_y is not None else 0,
            },
            "image_size": [int(imp.train_x.shape[1]), int(imp.train_x.shape[2])],
            "format": imp.format,
            "data_sha256": file_digests(staging / DATA)["sha256"],
            "data_bytes": (staging / DATA).stat().st_size,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resized": None,
            "source_fingerprint": None,
        } | imp.extra
        with open(staging / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(staging)
        swap_into_place(staging, data_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(data_dir)
    return manifest


def swap_into_place(staging: Path, final: Path) -> None:
    """Put the finished folder `staging` at `final`, replacing an older `final` whole.

    rename() cannot replace a non-empty directory, so the old copy is parked first and put back
    if the second rename fails; it is deleted only once the new one is in place. What to undo
    is read from the disk, not from flags, so a signal (which raises anywhere, see
    lab.cli.signals) between two renames still leaves one whole copy and no parked one. Used by
    the data cache, the report and the Grad-CAM galleries.
    """
    if not final.exists():
        os.rename(staging, final)
        return
    parked = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(final, parked)
        os.rename(staging, final)
    except BaseException:
        if parked.exists() and not final.exists():
            os.rename(parked, final)
        raise
    finally:
        if parked.exists() and final.exists():
            try:
                shutil.rmtree(parked, ignore_errors=True)
            finally:  # a signal cut the removal short: only the first one raises, so finish it
                shutil.rmtree(parked, ignore_errors=True)


# What every reader of a manifest uses; other fields (a newer lab's) are allowed.
MANIFEST_SHAPE = Obj(
    required={"name": STR, "classes": ListOf(STR, min_len=1),
              "counts": Obj({"train": COUNT}, {"test": Maybe(COUNT)}),
              "image_size": ListOf(Int(1, 2**31 - 1), min_len=2, max_len=2)},
    optional={"manifest_version": COUNT, "source": Maybe(STR), "source_sha256": Maybe(STR),
              "official": BOOL, "official_reason": Maybe(STR), "format": Maybe(STR),
              "data_sha256": Maybe(STR), "created": Maybe(STR), "resized": ANY,
              "source_fingerprint": ANY, "mirror_safe": BOOL, "official_val": COUNT,
              "data_bytes": COUNT})


def read_manifest(data_dir: Path, name: str) -> dict:
    """The manifest of a cached set, checked against `MANIFEST_SHAPE`; NotFoundError when the
    set is not there, DataError (with the way to rebuild it) when the manifest is corrupt."""
    check_name(name)
    path = data_dir / name / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"dataset '{name}' is not in {data_dir}", hint=_missing_hint(name))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise DataError(
            f"cannot read {path}: {type(e).__name__}: {e}"[:300],
            hint=reimport_hint({"name": name, "source": None}),
        ) from None
    why = problem(manifest, MANIFEST_SHAPE)
    if why is not None:
        source = manifest.get("source") if isinstance(manifest, dict) else None
        hint = reimport_hint({"name": name, "source": source if isinstance(source, str) else None})
        raise DataError(f"{path} is corrupt: {why}"[:300], hint=hint)
    return manifest


def _missing_hint(name: str) -> str:
    if name == "cifar10":
        return _FETCH_HINT
    return f"run `lab data import PATH --name {name}`; `lab data info` lists what is cached"


def reimport_hint(manifest: dict) -> str:
    """How to rebuild a damaged cache entry from where it came from."""
    source = manifest.get("source")
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return "run `lab data fetch` to download and rebuild it"
    if source:
        return f"rebuild it with `lab data import {source} --name {manifest.get('name')}`"
    return _FETCH_HINT


def _load_arrays(path: Path, manifest: dict) -> dict[str, np.ndarray]:
    """The arrays of ``data.npz``, memory-mapped where the file allows it (members stored
    uncompressed, as `save` writes them): opening a data set then copies nothing, and a set
    larger than RAM can still be trained on from the page cache (`data_on=disk`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            mapped = {info.filename[: -len(".npy")]: _map_member(path, info)
                      for info in archive.infolist() if info.filename.endswith(".npy")}
        if all(a is not None for a in mapped.values()):
            return {k: a for k, a in mapped.items() if a is not None}
        with np.load(path, allow_pickle=False) as npz:  # a compressed member: read it whole
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {e}", hint=reimport_hint(manifest)) from e


def _map_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    """One stored ``.npy`` member as a read-only memmap, or None when it cannot be mapped
    (compressed, or an object array)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local header: its name and extra lengths may differ
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        name_len, extra_len = int.from_bytes(local[26:28], "little"), \
            int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
    if dtype.hasobject:
        return None
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + size > info.file_size:
        raise ValueError(f"{info.filename} is shorter than its header says")
    if size == 0:  # mmap cannot map nothing
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def load_cached(data_dir: Path, name: str) -> Dataset:
    """Load a cached set and check it is shaped as its manifest says (hashing is verify's job)."""
    manifest = read_manifest(data_dir, name)
    arrays = _load_arrays(data_dir / name / DATA, manifest)
    problems = _manifest_problems(manifest, arrays)
    if problems:
        raise DataError(
            f"cached dataset '{name}' is damaged: {'; '.join(problems)}",
            hint=reimport_hint(manifest),
        )
    return Dataset(
        name=name,
        classes=list(manifest["classes"]),
        train_x=arrays["train_x"],
        train_y=arrays["train_y"],
        test_x=arrays.get("test_x"),
        test_y=arrays.get("test_y"),
        manifest=manifest,
    )


def _check_arrays(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray | None,
    test_y: np.ndarray | None,
    n_classes: int,
) -> None:
    problems = _array_problems(train_x, train_y, test_x, test_y, n_classes)
    # Every reader's output passes here, so this is where a one-class "classification" set is
    # stopped, whatever format it came in (a model can't learn to tell one class from nothing).
    if n_classes < 2:
        problems.append(f"{n_classes} class; classification needs at least two")
    if problems:
        raise DataError("refusing to cache a malformed dataset: " + "; ".join(problems))


def _array_problems(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, n_classes: int
) -> list[str]:
    problems: list[str] = []
    pairs = [("train", train_x, train_y)]
    if test_x is not None or test_y is not None:
        pairs.append(("test", test_x, test_y))
    shape = None
    for split, x, y in pairs:
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            problems.append(f"{split} arrays missing")
            continue
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
            problems.append(f"{split}_x is {x.dtype} {x.shape}, expected uint8 (N, H, W, 3)")
            continue
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            problems.append(f"{split}_y is {y.dtype} {y.shape}, expected int64 ({x.shape[0]},)")
            continue
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            problems.append(f"{split}_y has labels outside 0..{n_classes - 1}")
        if shape is not None and x.shape[1:] != shape:
            problems.append(f"test images are {x.shape[1:3]}, train images {shape[:2]}")
        shape = x.shape[1:]
    if isinstance(train_x, np.ndarray) and len(train_x) == 0:
        problems.append("no training images")
    return problems


def _manifest_problems(manifest: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes:
        return ["manifest has no class list"]
    problems = _array_problems(
        arrays.get("train_x"),
        arrays.get("train_y"),
        arrays.get("test_x"),
        arrays.get("test_y"),
        len(classes),
    )
    if problems:
        return problems
    counts = manifest.get("counts") or {}
    test_n = len(arrays["test_y"]) if "test_y" in arrays else 0
    if counts.get("train") != len(arrays["train_y"]) or counts.get("test") != test_n:
        problems.append(
            f"counts are {len(arrays['train_y'])}/{test_n}, manifest says "
            f"{counts.get('train')}/{counts.get('test')}"
        )
    if list(manifest.get("image_size") or []) != list(arrays["train_x"].shape[1:3]):
        problems.append(
            f"images are {list(arrays['train_x'].shape[1:3])}, "
            f"manifest says {manifest.get('image_size')}"
        )
    return problems


def verify_dataset(data_dir: Path, name: str) -> dict:
    """Prove the cache still holds what was imported: hash, shapes, counts and labels."""
    manifest = read_manifest(data_dir, name)
    path = data_dir / name / DATA
    if not path.is_file():
        raise DataError(f"{path} is missing", hint=reimport_hint(manifest))
    actual = file_digests(path)["sha256"]
    if actual != manifest.get("data_sha256"):
        raise DataError(
            f"dataset '{name}' was modified: data.npz sha256 {actual[:12]}… "
            f"does not match the manifest's {str(manifest.get('data_sha256'))[:12]}…",
            hint=reimport_hint(manifest),
        )
    arrays = _load_arrays(path, manifest)
    problems = _manifest_problems(manifest, arrays)
    if problems:
        raise DataError(
            f"dataset '{name}' is damaged: {'; '.join(problems)}", hint=reimport_hint(manifest)
        )
    return {
        "name": name,
        "ok": True,
        "data_sha256": actual,
        "counts": manifest["counts"],
        "image_size": manifest["image_size"],
        "classes": len(manifest["classes"]),
        "official": manifest.get("official"),
        "official_reason": manifest.get("official_reason"),
        "checks": ["data_sha256 matches manifest", "shapes and dtypes", "counts", "label range"],
    }


def list_datasets(data_dir: Path) -> list[dict]:
    """Manifests of every cached set, by name; an unreadable one is listed with ``error`` set."""
    if not data_dir.is_dir():
        return []
    out: list[dict] = []
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or not _NAME_RE.match(entry.name):
            continue
        if not (entry / MANIFEST).is_file():
            continue
        try:
            out.append(read_manifest(data_dir, entry.name))
        except (DataError, ConfigError) as e:
            out.append(_unreadable_entry(entry.name, e.message))
    return out


def _unreadable_entry(name: str, error: str) -> dict:
    # Shaped like a manifest so listings that index keys still work; ``error`` says what broke.
    return {
        "name": name,
        "classes": [],
        "source": None,
        "official": False,
        "official_reason": f"unreadable manifest: {error}",
        "counts": {"train": None, "test": None},
        "image_size": [],
        "format": None,
        "error": error,
    }

"""CIFAR-10 in its official "python version" format: pickled batches, tarball or extracted.

The batches are pickles, and unpickling runs code named by the file; a tarball from anywhere but
the official site could carry anything. They are therefore read with an unpickler that can build
numpy arrays and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.archive import Limits, TarStream, human
from lab.data.store import Imported, file_digests
from lab.errors import DataError

CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # of cifar-10-python.tar.gz
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
TEST_BATCH = "test_batch"
META = "batches.meta"
# torchvision.datasets.CIFAR10's md5s of the official files; matching them means the pixels and
# labels are byte-for-byte the published ones even when the archive itself was repacked.
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
_REDOWNLOAD = "the archive is damaged or incomplete; download it again with `lab data fetch`"


def _numpy_constructors() -> dict[tuple[str, str], Any]:
    # numpy 2 moved numpy.core to numpy._core; pickles name either, depending on who wrote them.
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    import _codecs

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # how Python 3 protocol-2 pickles spell bytes
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer  # protocol 5 arrays
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists and numpy arrays; any other global (os.system…) is refused."""

    _allowed = _numpy_constructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name}: not part of a CIFAR-10 batch",
                hint="this file is not a genuine CIFAR-10 batch; get the official archive "
                "with `lab data fetch`",
            ) from None


def unpickle(blob: bytes, what: str) -> Any:
    """Load one batch safely; ``encoding='bytes'`` as the CIFAR site says, for Python 2 pickles."""
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{what}: {e.message}", hint=e.hint) from None
    except Exception as e:  # any malformed pickle: truncated, wrong opcodes, bad array state
        raise DataError(
            f"{what} is not a readable CIFAR-10 batch ({type(e).__name__}: {e})",
            hint="the archive is damaged; download it again with `lab data fetch`",
        ) from e


def find_batch_dir(path: Path) -> Path | None:
    """The extracted batches folder at or directly under ``path``, if there is one."""
    for candidate in (path, path / BATCH_DIR):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    return None


def tar_holds_cifar(path: Path, peek: int = 64) -> bool:
    """Whether a tar archive is the batches format, judged from its first members only."""
    limits = Limits.from_env()
    with TarStream(path, limits) as tar:
        for i, member in enumerate(tar):
            parts = Path(member.name).parts
            if BATCH_DIR in parts or (parts and parts[-1] in _FILES):
                return True
            # Not a batch, and too big to skip cheaply: let the image-folder reader refuse it
            # with its own words instead of unpacking it here just to look further.
            if i >= peek or member.size > limits.file_bytes:
                break
    return False


def _read_tar_members(path: Path, limits: Limits) -> dict[str, bytes]:
    # Stream the archive once, keeping only the batch files; nothing is written to disk. The
    # whole stream is read to its end, so a cut or corrupt archive is refused as a whole.
    found: dict[str, bytes] = {}
    with TarStream(path, limits, hint=_REDOWNLOAD) as tar:
        for member in tar:
            base = Path(member.name).name
            if member.isfile() and base in _FILES:
                if base in found:
                    raise DataError(
                        f"{path} holds {base} more than once",
                        hint="a genuine CIFAR-10 archive has each batch once; "
                        "download it again with `lab data fetch`",
                    )
                found[base] = tar.read(member, member.name)
        tar.finish()
    return found


def _read_dir_members(batch_dir: Path, limits: Limits) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name in _FILES:
        p = batch_dir / name
        if p.is_file():
            try:
                with open(p, "rb") as f:
                    blob = f.read(min(os.fstat(f.fileno()).st_size, limits.file_bytes) + 1)
            except OSError as e:
                raise DataError(f"cannot read {p}: {e}", hint="check the file's permissions") from e
            if len(blob) > limits.file_bytes:
                raise DataError(
                    f"{p} is larger than the limit of {human(limits.file_bytes)}",
                    hint="set LAB_MAX_FILE_BYTES higher if the file is trusted",
                )
            found[name] = blob
    return found


def _get(d: dict, key: str) -> Any:
    # encoding='bytes' gives bytes keys; a batch re-pickled by Python 3 may use str keys.
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def _decode_batch(blob: bytes, what: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = unpickle(blob, what)
    if not isinstance(batch, dict):
        raise DataError(f"{what} is not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{what}: 'data' is not a uint8 (N, 3*H*W) array")
    side = int(round((data.shape[1] / 3) ** 0.5))
    if data.shape[1] != 3 * side * side or side == 0:
        raise DataError(f"{what}: rows of {data.shape[1]} bytes are not square RGB images")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: 'labels' is not a list of integers") from e
    if y.shape != (data.shape[0],):
        raise DataError(f"{what}: {y.size} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{what}: labels outside 0..{n_classes - 1}")
    # Rows are channel-planar (all R, then G, then B; each row-major); the rest of lab is HWC.
    x = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _decode_classes(blob: bytes) -> list[str]:
    meta = unpickle(blob, META)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise DataError(f"{META} has no label_names list")
    out = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(set(out)) != len(out):
        raise DataError(f"{META} lists a class twice")
    return out


def _md5s(members: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.md5(v).hexdigest() for k, v in members.items()}


def _batches_official(md5s: dict[str, str]) -> bool:
    return all(md5s.get(name) == md5 for name, md5 in BATCH_MD5.items())


def read_cifar(path: Path) -> Imported:
    """Read the official tarball or an extracted batches folder into HWC uint8 arrays."""
    limits = Limits.from_env()
    if path.is_dir():
        batch_dir = find_batch_dir(path)
        if batch_dir is None:
            raise DataError(
                f"no {TRAIN_BATCHES[0]} in {path} or {path / BATCH_DIR}",
                hint=f"point at the extracted {BATCH_DIR}/ folder or the tarball",
            )
        members = _read_dir_members(batch_dir, limits)
        source = str(batch_dir.resolve())
        md5s = _md5s(members)
        digest = hashlib.sha256()
        for name in sorted(members):
            digest.update(f"{name}\0{hashlib.sha256(members[name]).hexdigest()}\n".encode())
        source_sha256 = digest.hexdigest()
        if _batches_official(md5s):
            official, reason = True, "every batch file's md5 matches the official release"
        else:
            differ = sorted(k for k, v in BATCH_MD5.items() if md5s.get(k) != v)
            official = False
            reason = "batch file md5s differ from the official release's: " + ", ".join(differ)
    else:
        digests = file_digests(path, ("md5", "sha256"))
        members = _read_tar_members(path, limits)
        source, source_sha256 = str(path.resolve()), digests["sha256"]
        if digests["md5"] == CIFAR10_MD5:
            official, reason = True, "md5 matches the official cifar-10-python.tar.gz"
        elif _batches_official(_md5s(members)):
            official = True
            reason = "archive was repacked, but every batch file's md5 matches the official release"
        else:
            official = False
            reason = (
                f"md5 {digests['md5']} differs from the official cifar-10-python.tar.gz's "
                f"{CIFAR10_MD5}"
            )
    missing = [name for name in _FILES if name not in members]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}",
            hint="the CIFAR-10 copy is incomplete; download it again with `lab data fetch`",
        )
    classes = _decode_classes(members[META])
    parts = [_decode_batch(members[name], name, len(classes)) for name in TRAIN_BATCHES]
    test_x, test_y = _decode_batch(members[TEST_BATCH], TEST_BATCH, len(classes))
    if any(x.shape[1:] != test_x.shape[1:] for x, _ in parts):
        raise DataError(f"{path}: batches hold images of different sizes")
    return Imported(
        classes=classes,
        train_x=np.concatenate([x for x, _ in parts]),
        train_y=np.concatenate([y for _, y in parts]),
        test_x=test_x,
        test_y=test_y,
        source=source,
        source_sha256=source_sha256,
        official=official,
        official_reason=reason,
        format="cifar-python",
        default_name="cifar10",
    )

"""Image-folder trees (see `lab.data.layout`) as folders or archives, decoded into arrays.

This is how most data sets outside the official CIFAR release arrive, including the JPEG copy of
CIFAR-10. Archives are streamed member by member (never extracted, so a hostile member path can't
write anywhere) within the limits of ``lab.data.archive``, and images are decoded in a process
pool, because per-image Python overhead, not I/O, is what makes 60,000 small JPEGs slow. The pool
gets a bounded number of chunks at a time, so neither the archive's bytes nor its images are ever
all in memory undecoded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import signal
import stat
import statistics
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from lab.data.archive import (
    Limits,
    TarStream,
    check_directory,
    check_expansion,
    check_zip_member,
    damaged_as_data_error,
    human,
    read_zip_member,
)
from lab.data.cifar import CIFAR10_CLASSES
from lab.data.images import decode_rgb, fit_array
from lab.data.layout import (
    LAYOUT_HINT,
    UNREADABLE,
    Key,
    Layout,
    find_layout,
)
from lab.data.layout import hidden as _hidden
from lab.data.layout import is_image as _is_image
from lab.data.store import Imported, file_digests, safe_name
from lab.errors import ConfigError, DataError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar")
ZIP_SUFFIXES = (".zip",)
DEFAULT_SIZE_CAP = 256
FIT_RULE = "shorter side to the size, centre crop"
MAX_EXAMPLES = 5  # unreadable files named in the manifest; all are counted
# Images per task sent to the pool; the pool starts only once a full chunk has been seen, so small
# trees (tests, toy sets) never pay the seconds a process pool takes to start.
CHUNK = 1024
# ...or once this many image bytes are queued, whichever comes first: big images fill a chunk too.
CHUNK_BYTES = 32 * 1024 * 1024
# Chunks in flight per worker; the reader waits for the oldest beyond that, so memory stays
# bounded by the workers, not by the size of the archive.
IN_FLIGHT_PER_WORKER = 2
MAX_WORKERS = 8
Item = bytes | str  # image bytes (archives) or a file path to read (folders)
Decoded = np.ndarray | str  # the RGB array, or why it could not be decoded
Progress = Callable[[int, int | None], None]  # (images decoded, images in all or None)


def archive_kind(path: Path) -> str | None:
    """'tar' or 'zip' from the file name; None for anything else."""
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in TAR_SUFFIXES + ZIP_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def tree_fingerprint(path: Path) -> dict:
    """A cheap "has this changed?" check: file count and newest mtime, without reading contents."""
    if not path.is_dir():
        st = path.stat()
        return {"files": 1, "bytes": st.st_size, "newest_mtime": st.st_mtime}
    files, newest = 0, path.stat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            newest = max(newest, os.stat(os.path.join(dirpath, d)).st_mtime)
        for f in filenames:
            files += 1
            newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime)
    return {"files": files, "newest_mtime": newest}


def read_capped(path: str, max_bytes: int) -> bytes | str:
    """A file's bytes, or why there are none (shared with `lab predict`'s sources)."""
    try:
        with open(path, "rb") as f:
            # The size it has now (+1: it may grow), capped; a read of n may allocate n up front.
            blob = f.read(min(os.fstat(f.fileno()).st_size, max_bytes) + 1)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if len(blob) > max_bytes:
        return f"larger than the limit of {human(max_bytes)} (LAB_MAX_FILE_BYTES)"
    return blob


def _decode_one(
    item: Item, size: int | None, max_bytes: int, max_pixels: int
) -> tuple[Decoded, str | None]:
    blob = read_capped(item, max_bytes) if isinstance(item, str) else item
    if isinstance(blob, str):
        return blob, None
    digest = hashlib.sha256(blob).hexdigest() if isinstance(item, str) else None
    size_wh = None if size is None else (size, size)
    try:
        return decode_rgb(blob, max_pixels, size_wh), digest
    except DataError as e:
        return e.message, digest


def _decode_chunk(
    items: list[Item], size: int | None, max_bytes: int, max_pixels: int
) -> list[tuple[Decoded, str | None]]:
    """Pool task: decode a batch of images, reporting failures as text instead of raising."""
    return [_decode_one(item, size, max_bytes, max_pixels) for item in items]


class _Decoder:
    """Queues images and decodes them in-process, or in a pool once the set proves large."""

    def __init__(self, size: int | None, limits: Limits, source: Path,
                 progress: Progress | None = None) -> None:
        self.size = size
        self.progress = progress
        self.total: int | None = None  # images to decode, once known
        self.source = source
        self.limits = limits
        self.keys: list[Key] = []
        self.items: list[Item] = []
        self.item_bytes = 0
        self.pending: list[tuple[list[Key], list[Item], Future]] = []
        self.done: dict[Key, tuple[Decoded, str | None]] = {}
        self.decoded_bytes = 0
        self.pool: ProcessPoolExecutor | None = None
        self.workers = min(MAX_WORKERS, _cpu_count())

    def add(self, key: Key, item: Item) -> None:
        self.keys.append(key)
        self.items.append(item)
        self.item_bytes += len(item) if isinstance(item, bytes) else 0
        if len(self.items) >= CHUNK or self.item_bytes >= CHUNK_BYTES:
            self._flush()

    def _args(self) -> tuple[int | None, int, int]:
        return self.size, self.limits.file_bytes, self.limits.image_pixels

    def _store(self, keys: list[Key], results: list[tuple[Decoded, str | None]]) -> None:
        for key, result in zip(keys, results, strict=True):
            if isinstance(result[0], np.ndarray):
                self.decoded_bytes += result[0].nbytes
            self.done[key] = result
        if self.progress is not None:
            self.progress(len(self.done), self.total)
        if self.decoded_bytes > self.limits.decoded_bytes:
            raise DataError(
                f"the images of {self.source} pass the limit of "
                f"{human(self.limits.decoded_bytes)} once decoded, after {len(self.done)} images",
                hint="set LAB_MAX_DECODED_BYTES higher, or import with --size to shrink them",
            )

    def _decode_here(self, keys: list[Key], items: list[Item]) -> None:
        self._store(keys, _decode_chunk(items, *self._args()))

    def _collect_oldest(self) -> None:
        keys, items, future = self.pending.pop(0)
        try:
            results = future.result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): finish here
            self._decode_here(keys, items)
        else:
            self._store(keys, results)

    def _flush(self) -> None:
        if self.pool is None and self.workers > 1:
            try:
                # spawn, not fork: the caller may be multi-threaded (the TUI), and a forked child
                # would inherit its locks mid-use.
                ctx = multiprocessing.get_context("spawn")
                with _signals_held():
                    self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                                    initializer=_die_with_parent,
                                                    initargs=(os.getpid(),))
            except (OSError, NotImplementedError, ImportError):  # no semaphores (sandboxes)
                self.workers = 1
        if self.pool is not None:
            with _signals_held():  # submit starts the workers
                future = self.pool.submit(_decode_chunk, self.items, *self._args())
            self.pending.append((self.keys, self.items, future))
            while len(self.pending) > IN_FLIGHT_PER_WORKER * self.workers:
                self._collect_oldest()
        else:
            self._decode_here(self.keys, self.items)
        self.keys, self.items, self.item_bytes = [], [], 0

    def finish(self) -> dict[Key, tuple[Decoded, str | None]]:
        if self.pool is None:  # small set: decode here, no pool start-up
            self._decode_here(self.keys, self.items)
            self.keys, self.items, self.item_bytes = [], [], 0
            return self.done
        self._flush()
        while self.pending:
            self._collect_oldest()
        if self.pool is not None:  # every chunk is back: let the workers exit on their own
            self.pool.shutdown(wait=True)
            self.pool = None
        return self.done

    def close(self) -> None:
        """Stop the pool on the way out of an error or a signal (a no-op after `finish`).

        The workers are terminated, not waited for: a chunk takes seconds to decode, and a
        SIGTERM or Ctrl-C must not leave them running after the command has exited.
        """
        pool, self.pool = self.pool, None
        if pool is None:
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while the pool starts (or starts a worker).

    A handler that raises (Ctrl-C's, or the CLI's for all three) can fire anywhere; fired half
    way through spawning a worker, it leaves a child that never gets its start-up data, yet
    holds the pool's task pipe, so the pool's shutdown waits on it for ever. Noted here and
    delivered right after, to whatever handler was there before, the signal lands between
    whole steps. Only the main thread receives signals, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    saved: dict[int, Any] = {}
    try:
        for sig in HELD_SIGNALS:
            if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                saved[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a decoder process never outlives the command that started it.

    `close` terminates the workers when the command is interrupted; this covers what it cannot
    (kill -9, a crash): Linux sends SIGKILL to the worker when its parent dies, so no orphan
    keeps decoding or holds the caller's stderr pipe open. Ctrl-C, which a terminal sends to the
    whole process group, is left to the parent, which stops the pool itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def safe_key(name: str, archive: Path) -> Key:
    """An archive member's path as parts; import and `lab predict` refuse the same names."""
    # Members are never extracted, but a path that tries to escape marks a hostile archive.
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DataError(
            f"{archive} has an unsafe member path '{name}'",
            hint="refusing a hostile archive; repack it with relative paths",
        )
    return tuple(part for part in p.parts if part not in ("", "."))


def _add_file(key: Key, files: list[Key], seen: set[Key], source: Path) -> None:
    # Two members with one name: which one is "the" image is undefined (tar keeps appending,
    # zip keeps both), so refuse rather than import one of them, or both, silently.
    if not _hidden(key):
        if key in seen:
            raise DataError(
                f"{'/'.join(key)} appears more than once in {source}",
                hint="repack the archive with each file once",
            )
        seen.add(key)
    files.append(key)


def _scan_tar(path: Path, decoder: _Decoder, dirs: set[Key], limits: Limits) -> list[Key]:
    files: list[Key] = []
    seen: set[Key] = set()
    with TarStream(path, limits) as tar:
        for member in tar:
            key = safe_key(member.name, path)
            if not key:
                continue
            if member.isdir():
                dirs.add(key)
            elif member.isfile():
                _add_file(key, files, seen, path)
                if not _hidden(key) and _is_image(key):
                    decoder.add(key, tar.read(member, "/".join(key)))
        tar.finish()
    return files


def _scan_zip(path: Path, decoder: _Decoder, dirs: set[Key], limits: Limits) -> list[Key]:
    files: list[Key] = []
    seen: set[Key] = set()
    wanted: list[tuple[Key, zipfile.ZipInfo]] = []
    with damaged_as_data_error(path):
        zf = zipfile.ZipFile(path)
    with zf:
        if len(zf.filelist) > limits.archive_members:
            raise DataError(
                f"{path} has {len(zf.filelist)} entries, more than {limits.archive_members}",
                hint="set LAB_MAX_ARCHIVE_MEMBERS higher if the archive is trusted",
            )
        # Everything the central directory can tell is checked before a byte is unpacked.
        for info in zf.infolist():
            key = safe_key(info.filename, path)
            if not key:
                continue
            if info.is_dir():
                dirs.add(key)
            else:
                _add_file(key, files, seen, path)
                if not _hidden(key) and _is_image(key):
                    check_zip_member(path, info, limits)
                    wanted.append((key, info))
        check_directory(path, zf)
        unpacked = sum(info.file_size for _, info in wanted)
        packed = sum(info.compress_size for _, info in wanted)
        check_expansion(path, unpacked, packed, limits)
        decoder.total = len(wanted)
        for key, info in wanted:
            decoder.add(key, read_zip_member(path, zf, info, limits))
    return files


def _scan_dir(path: Path, dirs: set[Key]) -> dict[Key, str]:
    files: dict[Key, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel = Path(dirpath).relative_to(path).parts
        dirnames[:] = sorted(d for d in dirnames if not _hidden((d,)))
        dirs.update((*rel, d) for d in dirnames)
        for f in filenames:
            full = os.path.join(dirpath, f)
            # Only regular files (or links to them): reading a FIFO or a device would never end.
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError:  # a dangling link: reported as unreadable if the layout uses it
                regular = True
            if regular:
                files[(*rel, f)] = full
    return files


def read_image_folder(path: Path, size: int | None = None,
                      progress: Progress | None = None) -> Imported:
    """Decode a tree of class folders (see `lab.data.layout`); ``size`` fits every image to
    size x size (`lab.data.images.fit`), and mixed sizes without it get `default_size`.
    ``progress(done, total)`` hears of each decoded chunk (total None while unknown)."""
    if size is not None and (not isinstance(size, int) or not 1 <= size <= 4096):
        raise ConfigError(f"size must be a whole number of pixels from 1 to 4096, not {size!r}")
    kind = None if path.is_dir() else archive_kind(path)
    if not path.is_dir() and kind is None:
        raise DataError(
            f"{path} is not a folder or a .tar.gz/.tgz/.tar.xz/.tar/.zip archive",
            hint=f"{LAYOUT_HINT}; or a CIFAR-10 python tarball",
        )
    limits = Limits.from_env()
    dirs: set[Key] = set()
    decoder = _Decoder(size, limits, path, progress)
    dir_files: dict[Key, str] = {}
    try:
        if kind == "tar":
            files = _scan_tar(path, decoder, dirs, limits)
        elif kind == "zip":
            files = _scan_zip(path, decoder, dirs, limits)
        else:
            dir_files = _scan_dir(path, dirs)
            files = sorted(dir_files)
        found = find_layout(files, dirs, path)
        if kind is None:  # folders: read only what the layout uses, in the workers
            wanted = found.images()
            decoder.total = len(wanted)
            for key in wanted:
                decoder.add(key, dir_files[key])
        decoded = decoder.finish()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}", hint="check that the file is complete") from e
    finally:
        decoder.close()
    return _build(path, kind, found, decoded, dir_files, size)


def _readable(path: Path, found: Layout, decoded: dict[Key, tuple[Decoded, str | None]],
              ) -> list[str]:
    """Drop the images that did not decode from `found`; their names and reasons, counted.

    An image past one of the limits (LAB_MAX_*) is refused instead: the limit is a setting the
    user chose, and the message names it, so it is not skipped as if it were broken."""
    unreadable: list[str] = []
    for split, by_class in found.splits.items():
        for cls, keys in by_class.items():
            good: list[Key] = []
            for key in keys:
                why = decoded[key][0]
                if not isinstance(why, str):
                    good.append(key)
                elif "LAB_MAX_" in why:
                    raise DataError(f"{'/'.join(key)} in {path}: {why}",
                                    hint="raise the limit if the file is trusted")
                else:
                    unreadable.append(f"{'/'.join(key)}: {why}")
            if not good:
                folder = "/".join((*found.root, *((split,) if found.kind == "splits" else ()),
                                   cls))
                raise DataError(f"class folder {folder} in {path} has no readable images "
                                f"({len(keys)} unreadable)",
                                hint="replace the broken files or delete the folder")
            by_class[cls] = good
    found.skipped[UNREADABLE] = len(unreadable)
    return unreadable


def _build(
    path: Path,
    kind: str | None,
    found: Layout,
    decoded: dict[Key, tuple[Decoded, str | None]],
    dir_files: dict[Key, str],
    size: int | None,
) -> Imported:
    unreadable = _readable(path, found, decoded)
    arrays, resized = _uniform_arrays(found.images(), decoded, size)
    classes = found.classes
    parts: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    counts: dict[str, int] = {}
    # An official val/ goes after train/ in the training arrays: the split reads it from there
    # (the manifest's official_val says how many), so the cache keeps its two arrays per part.
    for group in (("train", "val"), ("test",)):
        keys = [k for s in group for cls in classes
                for k in found.splits.get(s, {}).get(cls, [])]
        labels = [label for s in group for label, cls in enumerate(classes)
                  for _ in found.splits.get(s, {}).get(cls, [])]
        for s in group:
            counts[s] = sum(len(ks) for ks in found.splits.get(s, {}).values())
        parts[group[0]] = (np.stack([arrays[k] for k in keys]),
                           np.asarray(labels, dtype=np.int64)) if keys else None
    train, test = parts["train"], parts["test"]
    assert train is not None  # find_layout refuses a tree without training images
    is_cifar = tuple(classes) == CIFAR10_CLASSES
    if is_cifar:
        reason = (
            "image-folder copy of CIFAR-10 (decoded image files), not the official "
            "cifar-10-python.tar.gz release"
        )
    else:
        reason = "image-folder tree: not the official release"
    return Imported(
        classes=classes,
        train_x=train[0],
        train_y=train[1],
        test_x=test[0] if test else None,
        test_y=test[1] if test else None,
        source=str(path.resolve()),
        source_sha256=_source_sha256(path, kind, decoded, dir_files),
        official=False,
        official_reason=reason,
        format="imagefolder",
        default_name="cifar10" if is_cifar else safe_name(_stem(path.resolve())),
        extra={"resized": resized, "root": "/".join(found.root), "layout": found.kind,
               "splits": counts, "official_val": counts["val"], "skipped": found.skipped,
               "unreadable": unreadable[:MAX_EXAMPLES]},
    )


def default_size(shorter_sides: list[int]) -> int:
    """The side mixed sizes are fitted to without --size: the median shorter side, rounded,
    at most DEFAULT_SIZE_CAP (bigger inputs cost memory and time, rarely accuracy)."""
    return max(1, min(DEFAULT_SIZE_CAP, round(statistics.median(shorter_sides))))


def _uniform_arrays(
    keys: list[Key], decoded: dict[Key, tuple[Decoded, str | None]], size: int | None,
) -> tuple[dict[Key, np.ndarray], dict | None]:
    # Models need one input size: images that agree keep theirs; mixed ones are fitted to a
    # square (aspect kept, centre crop), as `lab predict` fits its images.
    arrays: dict[Key, np.ndarray] = {k: decoded[k][0] for k in keys}  # type: ignore[misc]
    if size is not None:
        return arrays, {"to": [size, size], "why": f"requested size {size}", "rule": FIT_RULE}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) <= 1:
        return arrays, None
    sides = [min(a.shape[:2]) for a in arrays.values()]
    target = default_size(sides)
    for k, a in arrays.items():
        arrays[k] = fit_array(a, (target, target))
    why = (f"{len(shapes)} different sizes; median shorter side {statistics.median(sides):g} "
           f"px, at most {DEFAULT_SIZE_CAP}")
    return arrays, {"to": [target, target], "why": why, "rule": FIT_RULE}


def _source_sha256(
    path: Path,
    kind: str | None,
    decoded: dict[Key, tuple[Decoded, str | None]],
    dir_files: dict[Key, str],
) -> str:
    """Archive: its file hash. Folder: the sorted file list with each file's content hash."""
    if kind is not None:
        return file_digests(path)["sha256"]
    digest = hashlib.sha256()
    for key in sorted(dir_files):
        if _hidden(key):
            continue
        known = decoded.get(key, (None, None))[1]
        if known is None:
            known = file_digests(Path(dir_files[key]))["sha256"]
        digest.update(f"{'/'.join(key)}\0{known}\n".encode())
    return digest.hexdigest()

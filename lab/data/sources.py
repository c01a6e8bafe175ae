"""Image files named on a command line, one at a time: single files, folder trees (recursive)
and archives (.zip, .tar.*), each read only when its turn comes, so a folder of 10,000 images
or a big archive is never in memory at once.

Archives go through `lab.data.archive` (a member's size, the expansion ratio and the member
count are checked as for an import; member paths are never extracted). A file that cannot be
read is an `Entry` with an `error`; an archive that turns out damaged half way is one
`Entry` with its error after the members read so far.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.data.archive import (
    Limits,
    TarStream,
    check_directory,
    check_expansion,
    check_zip_member,
    damaged_as_data_error,
    read_zip_member,
)
from lab.data.folder import archive_kind, read_capped, safe_key
from lab.data.layout import hidden as _hidden
from lab.data.layout import is_image as _is_image
from lab.errors import DataError, LabError, NotFoundError


@dataclass
class Entry:
    """One file to try: `name` as a person reads it, `parts` its path below the folder or
    archive it came from (empty for a file named itself), and its bytes or why there are
    none."""

    name: str
    parts: tuple[str, ...]
    blob: bytes | None = None
    path: str | None = None  # a file on disk, read when `read()` is called
    error: str | None = None
    root: str = ""  # the folder or archive it came from ("" for a file named itself)

    def read(self, limits: Limits) -> bytes:
        """The file's bytes (capped by LAB_MAX_FILE_BYTES); a DataError when unreadable."""
        if self.error is not None:
            raise DataError(self.error)
        if self.blob is not None:
            return self.blob
        got = read_capped(str(self.path), limits.file_bytes)
        if isinstance(got, str):
            raise DataError(got)
        return got


@dataclass
class Skipped:
    """Files in a folder or archive that are not images by name (not tried)."""

    root: str
    count: int


def check_inputs(paths: list[Path]) -> None:
    """Every path must exist before anything is read: a typo is one line, not a half run."""
    for path in paths:
        if not path.exists():
            raise NotFoundError(f"no file or folder at {path}")


def entries(paths: list[Path], limits: Limits) -> Iterator[Entry | Skipped]:
    """Every image entry of `paths`, in order: a folder's files sorted, an archive's in its
    own order. Hidden files (and __MACOSX) are passed over; other non-images are counted."""
    for path in paths:
        kind = None if path.is_dir() else archive_kind(path)
        try:
            if path.is_dir():
                yield from _folder(path)
            elif kind == "tar":
                yield from _tar(path, limits)
            elif kind == "zip":
                yield from _zip(path, limits)
            else:
                yield Entry(str(path), (), path=str(path))
        except LabError as e:  # a damaged or hostile archive: what was read stays read
            yield Entry(str(path), (), error=e.message, root=str(path))
        except OSError as e:
            yield Entry(str(path), (), error=f"cannot read it ({e.strerror or e})",
                        root=str(path))


def _folder(root: Path) -> Iterator[Entry | Skipped]:
    other = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden((d,)))
        rel = Path(dirpath).relative_to(root).parts
        for f in sorted(filenames):
            key = (*rel, f)
            if _hidden(key):
                continue
            if not _is_image(key):
                other += 1
                continue
            yield Entry(os.path.join(dirpath, f), key, path=os.path.join(dirpath, f),
                        root=str(root))
    if other:
        yield Skipped(str(root), other)


def _tar(path: Path, limits: Limits) -> Iterator[Entry | Skipped]:
    other = 0
    with TarStream(path, limits) as tar:
        for member in tar:
            key = safe_key(member.name, path)
            if not key or not member.isfile() or _hidden(key):
                continue
            if not _is_image(key):
                other += 1
                continue
            name = f"{path}!{'/'.join(key)}"
            try:
                yield Entry(name, key, blob=tar.read(member, "/".join(key)), root=str(path))
            except DataError as e:
                if "limit" not in e.message:
                    raise  # the archive itself is damaged: nothing after this can be trusted
                yield Entry(name, key, error=e.message, root=str(path))
        tar.finish()
    if other:
        yield Skipped(str(path), other)


def _zip(path: Path, limits: Limits) -> Iterator[Entry | Skipped]:
    with damaged_as_data_error(path):
        zf = zipfile.ZipFile(path)
    with zf:
        if len(zf.filelist) > limits.archive_members:
            raise DataError(f"{path} has {len(zf.filelist)} entries, more than "
                            f"{limits.archive_members} (LAB_MAX_ARCHIVE_MEMBERS)")
        check_directory(path, zf)
        wanted, other = [], 0
        for info in zf.infolist():
            key = safe_key(info.filename, path)
            if not key or info.is_dir() or _hidden(key):
                continue
            if _is_image(key):
                wanted.append((key, info))
            else:
                other += 1
        check_expansion(path, sum(i.file_size for _, i in wanted),
                        sum(i.compress_size for _, i in wanted), limits)
        for key, info in wanted:
            name = f"{path}!{'/'.join(key)}"
            try:
                check_zip_member(path, info, limits)
                blob = read_zip_member(path, zf, info, limits)
            except DataError as e:  # this member only (encrypted, too big, bad CRC)
                yield Entry(name, key, error=e.message, root=str(path))
                continue
            yield Entry(name, key, blob=blob, root=str(path))
    if other:
        yield Skipped(str(path), other)

"""Archives read member by member within limits, so a hostile or damaged file costs bounded work.

An archive is a promise about sizes that only its writer made: a 3 MB zip can claim, or hold, a
3 GiB member, a tar.xz of zeros unpacks a thousand times over, and a transfer cut short still
starts like a good file. Everything here therefore streams, checks what it will read before
reading it, caps what it actually reads, and treats an archive that does not end where its format
says it ends as damaged as a whole: nothing from it is used.

Limits (environment variables, read at each import; sizes take a K, M, G or T suffix, 1024-based):

=========================== ============= ==========================================================
variable                    default       what it bounds
=========================== ============= ==========================================================
LAB_MAX_FILE_BYTES          64M           one file read (an image, a CIFAR batch), unpacked
LAB_MAX_IMAGE_PIXELS        25000000      one image's width x height, checked before it is decoded
LAB_MAX_DECODED_BYTES       16G           all decoded images of one import together (H x W x 3)
LAB_MAX_ARCHIVE_BYTES       64G           everything unpacked from one archive
LAB_MAX_ARCHIVE_MEMBERS     4000000       entries (files and folders) in one archive
LAB_MAX_COMPRESSION_RATIO   100           unpacked / packed bytes, once past 32 MiB unpacked
=========================== ============= ==========================================================
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError, DataError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
# Below this many unpacked bytes the ratio is not judged: small, very compressible files (a
# synthetic BMP of one colour) are normal, and cost nothing.
RATIO_FLOOR = 32 * MIB
_SUFFIX = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1024 * GIB}
_SIZE_RE = re.compile(r"^([0-9]{1,19})([KMGT]?)(?:I?B)?$")
# What the stdlib raises for a damaged, truncated, encrypted or exotic archive. They are caught
# only around archive calls (never around our own code), so none of them hides a bug elsewhere.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,  # gzip.BadGzipFile, bz2's "Invalid data stream", short reads
    RuntimeError,  # zipfile: encrypted member; NotImplementedError: unsupported method
    ValueError,  # bad numbers in headers, undecodable names
    struct.error,
    OverflowError,
)
DAMAGED_HINT = "the archive is damaged or incomplete; copy or pack it again"
# zip methods whose decompression zipfile bounds (deflate takes an output limit; stored is a copy).
# bzip2 and LZMA members are inflated a whole input chunk at a time, which a crafted member turns
# into gigabytes, so they are refused rather than trusted.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_ZIP_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    12: "bzip2",
    14: "LZMA",
    93: "zstd",
    95: "xz",
    98: "PPMd",
    99: "AES encryption",
}
_ZIP_ENCRYPTED = 0x1
_ZIP_PATCHED = 0x20
_ZIP_STRONG_ENCRYPTION = 0x40


@dataclass(frozen=True)
class Limits:
    """How much one import may read and decode; see the module docstring for the variables."""

    file_bytes: int = 64 * MIB
    image_pixels: int = 25_000_000
    decoded_bytes: int = 16 * GIB
    archive_bytes: int = 64 * GIB
    archive_members: int = 4_000_000
    compression_ratio: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by LAB_MAX_* variables; a malformed value is a ConfigError."""
        env = os.environ if environ is None else environ
        return cls(
            file_bytes=_env_size(env, "LAB_MAX_FILE_BYTES", cls.file_bytes),
            image_pixels=_env_size(env, "LAB_MAX_IMAGE_PIXELS", cls.image_pixels, suffix=False),
            decoded_bytes=_env_size(env, "LAB_MAX_DECODED_BYTES", cls.decoded_bytes),
            archive_bytes=_env_size(env, "LAB_MAX_ARCHIVE_BYTES", cls.archive_bytes),
            archive_members=_env_size(
                env, "LAB_MAX_ARCHIVE_MEMBERS", cls.archive_members, suffix=False
            ),
            compression_ratio=_env_size(
                env, "LAB_MAX_COMPRESSION_RATIO", cls.compression_ratio, suffix=False
            ),
        )


def _env_size(env: Mapping[str, str], name: str, default: int, suffix: bool = True) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    m = _SIZE_RE.match(raw.strip().upper())
    if m is None or (m.group(2) and not suffix) or int(m.group(1)) == 0:
        what = "a whole number of bytes, optionally with K, M, G or T" if suffix else (
            "a whole number"
        )
        raise ConfigError(f"{name}={raw!r} is not a limit", hint=f"use {what}, at least 1")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def human(n: int) -> str:
    """A byte count as people read it in a message: 3.0 GiB, 64 MiB, 512 B."""
    for unit, size in (("TiB", 1024 * GIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


@contextlib.contextmanager
def damaged_as_data_error(path: Path, hint: str = DAMAGED_HINT) -> Iterator[None]:
    """Turn whatever a stdlib archive reader raises into one DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except ARCHIVE_ERRORS as e:
        raise DataError(f"cannot read {path} ({type(e).__name__}: {e})", hint=hint) from e


def too_large(what: str, size: int, limit: int, variable: str) -> DataError:
    """The one wording of every "over a limit" refusal: what, how big, the limit, the variable."""
    return DataError(
        f"{what} is {human(size)} unpacked, over the limit of {human(limit)}",
        hint=f"set {variable} higher if the file is trusted",
    )


def check_expansion(path: Path, unpacked: int, packed: int, limits: Limits) -> None:
    """Refuse an archive that unpacks past the total cap, or past the ratio once that matters."""
    if unpacked > limits.archive_bytes:
        raise too_large(str(path), unpacked, limits.archive_bytes, "LAB_MAX_ARCHIVE_BYTES")
    if unpacked > RATIO_FLOOR and unpacked > limits.compression_ratio * max(packed, 1):
        raise DataError(
            f"{path} unpacks to {unpacked / max(packed, 1):.0f} times its packed size "
            f"({human(unpacked)} from {human(packed)}): a compression bomb",
            hint=f"the limit is {limits.compression_ratio}x past {human(RATIO_FLOOR)}; set "
            "LAB_MAX_COMPRESSION_RATIO higher if the archive is trusted",
        )


# --- zip --------------------------------------------------------------------------------------


def check_zip_member(path: Path, info: zipfile.ZipInfo, limits: Limits) -> None:
    """Refuse, from the central directory alone, a member lab could not read within limits."""
    name = info.filename
    if info.flag_bits & (_ZIP_ENCRYPTED | _ZIP_STRONG_ENCRYPTION) or info.compress_type == 99:
        raise DataError(
            f"{name} in {path} is encrypted",
            hint="lab reads no passwords; repack the archive without encryption",
        )
    if info.compress_type not in ZIP_METHODS or info.flag_bits & _ZIP_PATCHED:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, "unknown")
        raise DataError(
            f"{name} in {path} uses zip compression method {info.compress_type} ({method}), "
            "which lab does not read",
            hint="repack it with deflate (zip's default), or as .tar.gz/.tar.xz/.tar.bz2",
        )
    if info.file_size > limits.file_bytes:
        raise too_large(f"{name} in {path}", info.file_size, limits.file_bytes,
                        "LAB_MAX_FILE_BYTES")


def check_directory(path: Path, zf: zipfile.ZipFile) -> None:
    """The central directory must list every entry the end record counts, and each entry's local
    header must be where the directory says, under the same name.

    zipfile checks neither for members it does not open, and lab opens only images: a damaged
    comment length swallows the records after it, and a name damaged into "0001.pnf" or "trbin/"
    turns an image into a skipped file, so either would shrink the data set without a word.
    """
    infos = zf.infolist()
    with damaged_as_data_error(path), open(path, "rb") as f:
        # zipfile's own reader of the end record (private, but the one it trusted a moment ago).
        end = zipfile._EndRecData(f)  # type: ignore[attr-defined]
        counted = end[zipfile._ECD_ENTRIES_TOTAL] if end else len(infos)  # type: ignore[attr-defined]
        if counted != len(infos):
            raise zipfile.BadZipFile(
                f"the end record counts {counted} entries, the central directory holds {len(infos)}"
            )
        for info in infos:
            f.seek(info.header_offset)
            head = f.read(30)
            if len(head) != 30 or head[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"no local header for {info.orig_filename!r}")
            (flags,) = struct.unpack_from("<H", head, 6)
            (name_len,) = struct.unpack_from("<H", head, 26)
            name = f.read(name_len).decode("utf-8" if flags & 0x800 else "cp437")
            if name != info.orig_filename:
                raise zipfile.BadZipFile(
                    f"file name in directory {info.orig_filename!r} and header {name!r} differ"
                )


def read_zip_member(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits
) -> bytes:
    """One member's bytes, CRC-checked, never more than the file cap even if the header lies."""
    with damaged_as_data_error(path), zf.open(info) as f:
        # Ask for what the header promises (+1 to catch a longer member), not the cap: a read
        # of n bytes may allocate n bytes up front.
        blob = f.read(min(info.file_size, limits.file_bytes) + 1)
    if len(blob) > limits.file_bytes:
        raise too_large(f"{info.filename} in {path}", len(blob), limits.file_bytes,
                        "LAB_MAX_FILE_BYTES")
    return blob


# --- tar --------------------------------------------------------------------------------------


class _StrictTarInfo(tarfile.TarInfo):
    """A header block that is missing, short or garbage ends tarfile's loop as if the archive
    had ended; only the all-zero end-of-archive block truly ends one. Anything else means the
    archive was cut short or damaged, and must not pass for a smaller, complete archive."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # noqa: D102
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as e:
            raise tarfile.ReadError(
                f"it ends at byte {tarfile_.offset} without the end-of-archive marker ({e}): "
                "cut short"
            ) from None
        except tarfile.InvalidHeaderError as e:
            raise tarfile.ReadError(f"bad header at byte {tarfile_.offset} ({e})") from None


class _Metered:
    """The unpacked stream tarfile reads, counting bytes against the total cap and the ratio.

    tarfile asks for 10 KiB at a time; unpacking a mebibyte per call instead halves the cost of
    reading a big archive of small files, and the checks run once per mebibyte.
    """

    def __init__(
        self, unpacked: io.BufferedIOBase, packed: io.BufferedIOBase, path: Path, limits: Limits
    ) -> None:
        self.unpacked, self.packed, self.path, self.limits = unpacked, packed, path, limits
        self.total = 0
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self.unpacked.read(MIB)
            self._pos = 0
            self.total += len(self._buf)
            if self.total > RATIO_FLOOR or self.total > self.limits.archive_bytes:
                check_expansion(self.path, self.total, self.packed.tell(), self.limits)
        end = len(self._buf) if n < 0 else self._pos + n
        data = self._buf[self._pos : end]
        self._pos += len(data)
        return data


def _decompressor(raw: io.BufferedIOBase) -> io.BufferedIOBase:
    # Chosen by magic bytes, not by name: a .tar.gz that is really xz still reads. These readers,
    # unlike tarfile's own stream, raise on a stream that stops before its end marker and check
    # the stream's CRC; and they inflate a bounded amount per read.
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    return raw


class TarStream:
    """A tar (plain, gz, xz or bz2) read once, front to back, within ``limits``.

    Iterate for members, ``read(member)`` the ones wanted, then ``finish()`` to prove the archive
    ended as its format says (end-of-archive block, compressed stream complete, CRC good). Any
    damage is a DataError naming the file; until ``finish()`` returns, nothing read is trusted.
    """

    def __init__(self, path: Path, limits: Limits, hint: str = DAMAGED_HINT) -> None:
        self.path, self.limits, self.hint = path, limits, hint
        self.members = 0
        self._stack = contextlib.ExitStack()
        try:
            with damaged_as_data_error(path, hint):
                # Held open past __init__ on purpose: the stack closes them in close().
                raw = self._stack.enter_context(open(path, "rb"))  # noqa: SIM115
                unpacked = self._stack.enter_context(_decompressor(raw))
                self._meter = _Metered(unpacked, raw, path, limits)
                tar = tarfile.open(fileobj=self._meter, mode="r|", tarinfo=_StrictTarInfo)  # noqa: SIM115
                self._tar = self._stack.enter_context(tar)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> TarStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the files; safe to call twice."""
        with contextlib.suppress(*ARCHIVE_ERRORS):
            self._stack.close()

    def _damaged(self, e: BaseException) -> DataError:
        return DataError(f"cannot read {self.path} ({type(e).__name__}: {e})", hint=self.hint)

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            try:  # try/except, not damaged_as_data_error: this runs once per member
                member = self._tar.next()
            except DataError:
                raise
            except ARCHIVE_ERRORS as e:
                raise self._damaged(e) from e
            if member is None:
                return
            # tarfile keeps every member it has seen; a stream is read once, so let them go
            # (millions of entries would otherwise cost a kilobyte each).
            self._tar.members.clear()
            self.members += 1
            if self.members > self.limits.archive_members:
                raise DataError(
                    f"{self.path} has more than {self.limits.archive_members} entries",
                    hint="set LAB_MAX_ARCHIVE_MEMBERS higher if the archive is trusted",
                )
            yield member

    def read(self, member: tarfile.TarInfo, name: str) -> bytes:
        """A regular member's bytes, refused past the file cap whatever its header says."""
        if member.size > self.limits.file_bytes:
            raise too_large(f"{name} in {self.path}", member.size, self.limits.file_bytes,
                            "LAB_MAX_FILE_BYTES")
        try:
            f = self._tar.extractfile(member)
            want = min(member.size, self.limits.file_bytes) + 1  # not the cap: see read_zip_member
            blob = f.read(want) if f is not None else b""
        except DataError:
            raise
        except ARCHIVE_ERRORS as e:
            raise self._damaged(e) from e
        if len(blob) < member.size:
            raise self._damaged(tarfile.ReadError(f"{name} ends early: cut short"))
        if len(blob) > self.limits.file_bytes:
            raise too_large(f"{name} in {self.path}", len(blob), self.limits.file_bytes,
                            "LAB_MAX_FILE_BYTES")
        return blob

    def finish(self) -> None:
        """Read to the end of the compressed stream, so a cut or corrupt tail is caught too."""
        with damaged_as_data_error(self.path, self.hint):
            while self._meter.read(MIB):
                pass

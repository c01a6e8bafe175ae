"""Following a log file as it grows, for the full-screen log view: `tail -F` in a class.

A job's log can be huge, can be truncated or replaced while it is watched, or not exist yet, so
each `read()` says which of these happened: new complete lines, a fresh start, or no file. Only
the last `max_bytes` of a file are ever read in one go (a 5 GB log costs what 2 MB cost), and
partial lines wait for their end, so a line is never shown half-written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024  # read at most this much at once: the tail of a big log

# colour and cursor codes a program printed: the view draws plain text (and searches it)
_ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Change:
    """What one `read()` found.

    `reset`: the lines shown so far are gone (first read, the file truncated or replaced, or it
    vanished); `lines` then replaces them, else it is appended. `skipped`: bytes not read (the
    start of a big file, or a burst larger than `max_bytes`), to say so rather than hide it."""

    lines: list[str] = field(default_factory=list)
    reset: bool = False
    missing: bool = False
    skipped: int = 0
    why: str = ""  # "truncated", "replaced", "missing", "" (first read or growth)
    size: int = 0  # the file's size after this read


class LogTail:
    """Reads what was appended to `path` since the last call, following truncation and
    rotation (a new file under the same name) as `tail -F` does."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES,
                 fmt: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fmt = fmt  # e.g. metrics.jsonl events into readable lines (one may become two)
        self._ident: tuple[int, int] | None = None  # (device, inode) of the file being read
        self._offset = 0
        self._partial = b""
        self._started = False
        self._missing = False

    def read(self) -> Change:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                return self._read_open(fh, (st.st_dev, st.st_ino), st.st_size)
        except FileNotFoundError:
            return self._gone()
        except OSError as exc:  # unreadable (permissions, a directory): say why, keep trying
            change = self._gone()
            change.why = f"unreadable: {exc.strerror or exc}"
            return change

    def _gone(self) -> Change:
        first = not self._started or not self._missing
        self._started, self._missing = True, True
        self._ident, self._offset, self._partial = None, 0, b""
        return Change(reset=first, missing=True, why="missing")

    def _read_open(self, fh, ident: tuple[int, int], size: int) -> Change:  # noqa: ANN001
        change = Change(size=size)
        if not self._started or self._missing or ident != self._ident or size < self._offset:
            if self._started and not self._missing:
                change.why = "replaced" if ident != self._ident else "truncated"
            change.reset = True
            self._ident, self._offset, self._partial = ident, 0, b""
        self._started, self._missing = True, False
        start = self._offset
        if size - start > self.max_bytes:  # only the tail; the cut line is dropped below
            start = size - self.max_bytes
            change.skipped = start - self._offset + len(self._partial)
            self._partial = b""
        fh.seek(start)
        data = fh.read(size - start)
        self._offset = start + len(data)
        if change.skipped:  # the first line was cut: skip it whole
            cut = data.index(b"\n") + 1 if b"\n" in data else len(data)
            change.skipped += cut
            data = data[cut:]
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        change.lines = [line for p in pieces for line in self._line(p).split("\n")]
        return change

    def _line(self, raw: bytes) -> str:
        text = _ESCAPES.sub(b"", raw.rstrip(b"\r")).decode("utf-8", "replace")
        if "\r" in text:  # a progress bar redrawn in place: what the terminal would show last
            text = text.rsplit("\r", 1)[1]
        text = _CONTROL.sub("", text.expandtabs())
        if self.fmt is not None:
            text = self.fmt(text)
        return text

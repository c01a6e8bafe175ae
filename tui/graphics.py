"""What the terminal draws pictures with: asked once before the console takes the terminal,
told to textual-image when the first picture is drawn.

textual-image asks while it is imported (Sixel, then Kitty graphics, then the cell size; each
waits up to 0.1 s, and tmux never answers the Kitty query, so every start waited), and importing
it costs numpy and PIL. Here one write asks all three and ends with a Primary Device Attributes
request, which every terminal answers (tmux too), in order: once its answer is in, so are all the
others there will be, and nothing is waited for. The pictures' modules are imported when a
picture first has a box on screen (`image_class`), with these answers filled in so that
textual-image asks nothing (Textual reads the terminal by then).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KITTY_QUERY = b"\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"  # a 1x1 image: "OK" if it can
CELL_QUERY = b"\x1b[16t"  # the cell's size in pixels, asked when the kernel does not know it
DEVICE_QUERY = b"\x1b[c"  # Primary Device Attributes: "4" among them is Sixel
_DEVICE = re.compile(rb"\x1b\[\?([\d;]*)c")
_CELL = re.compile(rb"\x1b\[6;(\d+);(\d+)t")
_KITTY_OK = re.compile(rb"\x1b_G[^\x1b;]*;OK\x1b\\")
VT340_CELL = (10, 20)  # textual-image's guess when nothing says


@dataclass(frozen=True)
class Graphics:
    """How pictures are drawn: `protocol` is sixel, kitty, halfcell or unicode; `cell` the
    (width, height) of a cell in pixels."""

    protocol: str
    cell: tuple[int, int] = VT340_CELL


_probed: Graphics | None = None


def parse_answers(answers: bytes, cell: tuple[int, int] | None = None) -> Graphics:
    """The terminal's answers to the three queries (a cell size from the kernel wins)."""
    device = _DEVICE.search(answers)
    if device and b"4" in device.group(1).split(b";"):
        protocol = "sixel"  # textual-image's order: Kitty itself has no Sixel
    elif _KITTY_OK.search(answers):
        protocol = "kitty"
    else:
        protocol = "halfcell"
    if cell is None and (found := _CELL.search(answers)):
        height, width = int(found.group(1)), int(found.group(2))
        cell = (width, height) if width and height else None
    return Graphics(protocol, cell or VT340_CELL)


def probe(timeout: float = 0.3) -> Graphics:
    """Ask the terminal on stdin/stdout (once; later calls return the first answer). Not a
    terminal: Unicode blocks, nothing asked."""
    global _probed
    if _probed is None:
        _probed = _ask(timeout)
    return _probed


def _ask(timeout: float) -> Graphics:
    out, inp = sys.__stdout__, sys.__stdin__
    if out is None or inp is None or not (out.isatty() and inp.isatty()) or os.name != "posix":
        return found()  # not a terminal, or not one this module can read (Windows): no asking
    cell = _kernel_cell()
    ask = KITTY_QUERY + (b"" if cell else CELL_QUERY) + DEVICE_QUERY
    fd = inp.fileno()
    answers = b""
    try:
        with _cbreak(fd):
            os.write(out.fileno(), ask)
            deadline = time.monotonic() + timeout
            while not _DEVICE.search(answers):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    break  # no answer: half-cell blocks, as textual-image does
                answers += os.read(fd, 1024)
    except OSError:
        pass
    return parse_answers(answers, cell)


def _kernel_cell() -> tuple[int, int] | None:
    """The cell's pixels from the terminal's window size, where the terminal sets them."""
    import struct

    try:
        import fcntl
        import termios

        rows, cols, width, height = struct.unpack(
            "HHHH", fcntl.ioctl(sys.__stdout__, termios.TIOCGWINSZ, b"\0" * 8))
    except (ImportError, OSError, TypeError, ValueError):
        return None
    if not (rows and cols and width and height):
        return None
    return width // cols, height // rows


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def found() -> Graphics:
    """The probe's answer, or, where none was asked (tests, screenshots), what textual-image
    falls back to without asking: half cells on a terminal, Unicode blocks elsewhere."""
    if _probed is not None:
        return _probed
    out = sys.__stdout__
    tty_out = out is not None and out.isatty()
    return Graphics("halfcell" if tty_out else "unicode", _kernel_cell() or VT340_CELL)


def image_class() -> Any:
    """textual-image's widget class for the terminal, importing it (numpy, PIL) now. Its own
    queries are answered "no" at once, before they reach the terminal: it takes `found()`."""
    graphics = found()
    from textual_image import _terminal

    _terminal.get_cell_size._result = _terminal.CellSize(*graphics.cell)  # its cache
    asks = _terminal.capture_terminal_response
    _terminal.capture_terminal_response = _unanswered  # while the renderables are imported
    try:
        from textual_image import widget
    finally:
        _terminal.capture_terminal_response = asks

    return {"sixel": widget.SixelImage, "kitty": widget.TGPImage,
            "halfcell": widget.HalfcellImage, "unicode": widget.UnicodeImage}[graphics.protocol]


@contextlib.contextmanager
def _unanswered(*_args: object, **_kwargs: object) -> Iterator[Any]:
    from textual_image._terminal import TerminalError

    raise TerminalError("asked before the console started (tui.graphics.probe)")
    yield  # a generator, for contextmanager

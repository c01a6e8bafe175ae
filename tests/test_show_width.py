"""`lab show` draws everything at one width (issue 14, defect 7): COLUMNS when set, else the
terminal's, else 80; piped, its charts used to be ~100 columns beside 80-column tables, so
their lines wrapped. Checked through a real pipe, with a pseudo-terminal for the terminal case."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.tui_runs import write_run

pytestmark = pytest.mark.slow  # the CLI in children

RUN = "20250301-100000-l3-145d"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("width") / "runs"
    write_run(runs, RUN, 3, epochs=5)
    return runs


def _show(runs: Path, columns: int | None, terminal: int | None = None) -> str:
    """`lab show` with stdout a pipe; stderr a pseudo-terminal `terminal` columns wide."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    stderr, keep = subprocess.PIPE, None
    if terminal is not None:
        keep, stderr = pty.openpty()
        fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 40, terminal, 0, 0))
    try:
        proc = subprocess.run([sys.executable, "-m", "lab", "show", RUN, "--runs-dir", str(runs)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                              env=env, timeout=120)
    finally:
        if keep is not None:
            os.close(keep)
            os.close(stderr)  # type: ignore[arg-type]
    assert proc.returncode == 0
    return proc.stdout.decode()


@pytest.mark.parametrize(("columns", "terminal", "width"), [
    (None, None, 80), (40, None, 40), (60, None, 60), (100, None, 100), (132, None, 132),
    (None, 72, 72), (None, 120, 120),  # piped, in a terminal that wide
])
def test_no_line_is_wider_than_the_output(runs: Path, columns: int | None,
                                          terminal: int | None, width: int) -> None:
    text = _show(runs, columns, terminal)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    # the chart drawn at that width, not wrapped: both panels' frames on one line each
    top = next(line for line in lines if "┌" in line)
    bottom = next(line for line in lines if "└" in line)
    assert top.count("┌") == top.count("┐") == 2, top
    assert bottom.count("└") == bottom.count("┘") == 2, bottom
    assert len(top.rstrip()) > width - 4  # and using it
    assert "Per-class report" in text and "Confusion matrix" in text

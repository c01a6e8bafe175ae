"""A read-only directory that holds even for root: CI runs as root, and root ignores the
permission bits unless it gives up CAP_DAC_OVERRIDE. The child process drops every capability
(prctl(2), through ctypes) before it runs, so the bits apply to it as to anybody else."""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
from pathlib import Path

_PR_CAPBSET_DROP = 24
_CAP_LAST = 63


def drop_capabilities() -> None:
    """preexec_fn: empty the capability bounding set, so the program this child execs keeps
    uid 0 but gets no capabilities (exec recomputes root's from the bounding set)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(_CAP_LAST + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap}) failed")


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def run_without_capabilities(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python ARGV...` from the repository root, as root without capabilities (or as the user
    one is), output captured as text."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent,
                          preexec_fn=drop_capabilities,
                          env={**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"})

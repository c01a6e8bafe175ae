"""How a process leaves (`lab.core.collectives.leave`): a rank skips the interpreter's teardown,
where torch.distributed's threads could abort or hang it, and loses none of its output; any
other process exits as usual. Checked in real subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import atexit, sys
from lab.core import collectives
atexit.register(lambda: print("teardown ran"))
if {joined}:
    collectives._joined = True
print("said on stdout", end="")  # buffered: no newline, and a pipe, not a terminal
sys.stderr.write("said on stderr")
collectives.leave({code})
"""


@pytest.mark.parametrize("code", [0, 1, 130])
@pytest.mark.parametrize("joined", [False, True])
def test_leave_keeps_the_exit_code_and_the_output(joined: bool, code: int) -> None:
    done = subprocess.run([sys.executable, "-c", CODE.format(joined=joined, code=code)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code
    assert done.stdout.startswith("said on stdout") and done.stderr == "said on stderr"
    assert ("teardown ran" in done.stdout) == (not joined)

"""The worker's side of warm job templates (`lab.queue.template`): a template that cannot start
is given up on with a line saying jobs start in a fresh interpreter, an adopted process is
waited on like a `Popen`, and orphans re-parented to a subreaper worker are reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab.queue.template import Adopted, Template, become_subreaper, reap_strays
from tests.jobtools import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")


def test_a_template_that_cannot_start_is_given_up_on_and_said_so() -> None:
    said: list[str] = []
    template = Template("", said.append, module="lab.no_such_module")
    wait_for("the template to be given up on", lambda: not template.starting, timeout=120)
    assert not template.ready and template.broken is not None
    assert template.fork(["1"], os.devnull) is None  # the worker then starts a fresh one
    assert len(said) == 1 and said[0].endswith("jobs start in a fresh interpreter")
    assert template.proc.poll() is not None


@pytest.fixture
def subreaper() -> None:
    assert become_subreaper(True)
    yield
    become_subreaper(False)


def zombies_of_mine() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.add(int(entry))
    return found


@pytest.mark.usefixtures("subreaper")
def test_orphans_re_parented_to_the_worker_are_reaped_and_its_own_children_left_alone() -> None:
    mine = subprocess.Popen([sys.executable, "-c", "pass"])  # a child the worker tracks
    mine_pid = mine.pid
    # a grandchild whose parent exits at once: it becomes ours, then a zombie
    subprocess.run(["sh", "-c", "sleep 0.2 & exit 0"], check=True)
    stray = wait_for("an orphan to die as our zombie",
                     lambda: zombies_of_mine() - {mine_pid}, timeout=30)
    wait_for("our own child to exit", lambda: mine_pid in zombies_of_mine(), timeout=60)
    assert set(reap_strays({mine_pid})) == stray
    assert zombies_of_mine() == {mine_pid}  # left to its owner, whose status is intact
    assert mine.wait() == 0


@pytest.mark.usefixtures("subreaper")
def test_an_adopted_process_reports_its_exit_like_popen() -> None:
    """A grandchild re-parented to us is waited on, signalled and read back as `Popen` is."""
    middle = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                            capture_output=True, text=True, check=True)
    pid = int(middle.stdout)
    adopted = Adopted(pid)
    time.sleep(0.05)
    assert adopted.poll() is None
    adopted.send_signal(signal.SIGTERM)
    assert adopted.wait(timeout=30) == -signal.SIGTERM
    adopted.kill()  # already gone: nothing is signalled
    assert adopted.poll() == -signal.SIGTERM


@pytest.mark.slow  # imports torch, torchvision and the engine in a fresh interpreter
def test_the_template_s_imports_leave_cuda_uninitialised_so_it_may_fork() -> None:
    """The check the template makes before it says it is ready, and before every fork."""
    code = ("from lab.entry.template import _warm, cuda_touched; _warm(); "
            "import sys; print(cuda_touched(), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.stdout.split() == ["False", "True"], proc.stderr

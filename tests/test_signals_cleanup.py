"""SIGTERM, SIGINT and SIGHUP (an SSH link dropping) end a command with nothing left behind.

The real `python -m lab data import` and `lab report` run in their own session; a signal is sent
at a moment read from the outside (lab's handlers installed, the decoder pool started, the data
set being saved, the report being built), never after a fixed sleep. Then: exit 130 and one
`lab: error:` line, no process left in the session (pool workers, multiprocessing's resource
tracker), no temp file in the data dir, the runs dir or $TMPDIR, the previous data set or report
unchanged, and `communicate` returns (no child holds the caller's pipes). `lab report -o DIR`
writes into an empty folder in place, keeping its mode, and never replaces a folder it did not
write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.errors import ConfigError
from lab.launch.run import start_run
from lab.levels import level_config
from lab.views.report import MARKER, write_report

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_S = 0.005
MOMENT_LIMIT_S = 120  # generous: a bound for a stuck child, not a timing assertion

pytestmark = pytest.mark.slow  # every test starts processes or draws a report (seconds each)


# ---- processes and files, seen from the outside ---------------------------------------------

def session_processes(sid: int) -> list[tuple[int, str]]:
    """Live (not zombie) processes in session `sid` or process group `sid`, with command lines.

    Orphans are re-parented (to init), so ancestry cannot find them; the session they inherited
    from the command started with `start_new_session=True` can.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
            if state in "ZX" or sid not in (pgrp, session):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        found.append((int(entry), cmd))
    return found


def wait_gone(sid: int, limit_s: float = 20.0) -> list[tuple[int, str]]:
    """The session's processes still alive after a bounded wait (they may take a moment)."""
    deadline = time.monotonic() + limit_s
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (/proc's SigCgt mask)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def snapshot(path: Path) -> dict[str, str]:
    """Every file under `path` (hidden ones too) with its content hash."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(*dirs: Path) -> list[str]:
    """Temp files and folders (lab's all start with a dot) directly in the given folders."""
    return [str(p) for d in dirs if d.exists() for p in d.iterdir() if p.name.startswith(".")]


class Command:
    """`python -m lab ARGS` in a new session, its output captured as a caller would."""

    def __init__(self, args: list[str], tmpdir: Path) -> None:
        env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        env.pop("LAB_DEBUG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def wait_for(self, moment: Callable[[], bool]) -> bool:
        """Poll until `moment()` holds; False if the command ended first."""
        deadline = time.monotonic() + MOMENT_LIMIT_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            if moment():
                return True
            time.sleep(POLL_S)
        return False

    def finish(self) -> tuple[int, str]:
        """Exit code and stderr; fails (after killing the group) if the pipes stay open."""
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.proc.communicate()
            pytest.fail("the command's output pipes stayed open after it was signalled: "
                        f"{session_processes(self.pid)}")
        return self.proc.returncode, err.decode(errors="replace")

    def kill_group(self) -> None:
        for pid, _ in session_processes(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def assert_clean_exit(cmd: Command, signum: int) -> None:
    code, err = cmd.finish()
    left = wait_gone(cmd.pid)
    cmd.kill_group()
    name = signal.Signals(signum).name
    assert code == 130, (name, code, err)
    assert err.splitlines() == [f"lab: error: interrupted by {name}"], err
    assert left == [], f"processes outlived `lab` after {name}: {left}"


# ---- lab data import ------------------------------------------------------------------------

def write_tree(root: Path, classes: tuple[str, ...], per_class: int, side: int) -> Path:
    rng = np.random.default_rng(len(classes) * per_class)
    for split, n in (("train", per_class), ("test", max(1, per_class // 5))):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:05d}.png", compress_level=0)
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A big tree (enough images to start the decoder pool) and a small one cached before."""
    base = tmp_path_factory.mktemp("signals")
    big = write_tree(base / "big", ("a", "b", "c", "d"), 700, 48)
    small = write_tree(base / "small", ("x", "y"), 3, 8)
    return {"big": big, "small": small}


def pool_started(sid: int) -> Callable[[], bool]:
    return lambda: any("spawn_main" in cmd for _, cmd in session_processes(sid))


def staging(data: Path) -> Callable[[], bool]:
    return lambda: any(p.name.startswith(".tmp-") for p in data.iterdir()) if data.exists() \
        else False


def cache_small(tree: Path, data: Path) -> None:
    """The copy an interrupted import must leave as it was."""
    subprocess.run([sys.executable, "-m", "lab", "data", "import", str(tree), "--name", "set",
                    "--data-dir", str(data)], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


IMPORT_MOMENTS = ("handlers installed", "pool started", "saving")


@pytest.mark.skipif(not LINUX, reason="reads /proc")
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("moment", IMPORT_MOMENTS)
def test_import_interrupted_leaves_nothing(trees: dict[str, Path], tmp_path: Path,
                                           signum: int, moment: str) -> None:
    data, tmpdir = tmp_path / "data", tmp_path / "tmp"
    tmpdir.mkdir()
    args = ["data", "import", str(trees["big"]), "--name", "set", "--data-dir", str(data)]
    for _attempt in range(3):  # "saving" lasts a fraction of a second: it may be missed
        cache_small(trees["small"], data)
        before = snapshot(data)
        cmd = Command(args, tmpdir)
        checks = {"handlers installed": lambda c=cmd: catches(c.pid, signal.SIGTERM),
                  "pool started": pool_started(cmd.pid), "saving": staging(data)}
        if cmd.wait_for(checks[moment]):
            break
        assert cmd.finish()[0] == 0 and wait_gone(cmd.pid) == []
    else:
        pytest.fail(f"never caught the import at '{moment}'")
    os.kill(cmd.pid, signum)
    assert_clean_exit(cmd, signum)
    assert leftovers(data) == [] and list(tmpdir.iterdir()) == []
    after = snapshot(data)
    if moment == "saving" and after != before:
        # the signal came after the new copy was renamed into place: it must then be whole
        manifest = json.loads((data / "set" / "manifest.json").read_text())
        assert manifest["counts"]["train"] == 2800 and sorted(after) == sorted(before)
        data_file = (data / "set" / "data.npz").read_bytes()
        assert hashlib.sha256(data_file).hexdigest() == manifest["data_sha256"]
    else:
        assert after == before


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_ctrl_c_to_the_whole_group_and_kill_9(trees: dict[str, Path], tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the pool workers too: they leave it to the parent (no
    traceback from them). kill -9 of the parent cleans nothing up, yet its workers die with it
    and the resource tracker follows, so the caller's pipes close."""
    data, tmpdir = tmp_path / "data", tmp_path / "tmp"
    tmpdir.mkdir()
    args = ["data", "import", str(trees["big"]), "--name", "set", "--data-dir", str(data)]
    cmd = Command(args, tmpdir)
    assert cmd.wait_for(pool_started(cmd.pid))
    os.killpg(cmd.pid, signal.SIGINT)
    assert_clean_exit(cmd, signal.SIGINT)
    assert leftovers(data) == [] and list(tmpdir.iterdir()) == []

    cmd = Command(args, tmpdir)
    assert cmd.wait_for(pool_started(cmd.pid))
    os.kill(cmd.pid, signal.SIGKILL)
    code, _ = cmd.finish()
    left = wait_gone(cmd.pid)
    cmd.kill_group()
    assert code == -signal.SIGKILL
    assert left == [], f"processes outlived a killed `lab`: {left}"


# ---- lab report -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs dir with one real, tiny finished run (Level 3 on digits, one epoch)."""
    import torch

    root = tmp_path_factory.mktemp("report-runs")
    config = level_config(3).replace(epochs=1, cnn_channels=(8, 16, 16, 32), cnn_hidden=32,
                                     dataset="digits", image_size=16, device="cpu", gradcam=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start_run(config, root / "runs", root / "data")
    finally:
        torch.set_num_threads(threads)
    return root / "runs"


def report_building(runs: Path) -> Callable[[], bool]:
    return lambda: any(p.name.startswith(".report.tmp-") for p in runs.iterdir())


def figures_written(runs: Path) -> Callable[[], bool]:
    return lambda: any(p.name.startswith(".report.tmp-") and any(p.glob("figures/*.png"))
                       for p in runs.iterdir())


@pytest.mark.skipif(not LINUX, reason="reads /proc")
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("moment", ("handlers installed", "building", "figures written"))
def test_report_interrupted_leaves_nothing(finished: Path, tmp_path: Path, signum: int,
                                           moment: str) -> None:
    runs, tmpdir = tmp_path / "runs", tmp_path / "tmp"
    shutil.copytree(finished, runs)
    tmpdir.mkdir()
    write_report(runs)  # the previous report, which must survive
    before = snapshot(runs)
    cmd = Command(["report", "--runs-dir", str(runs)], tmpdir)
    checks = {"handlers installed": lambda: catches(cmd.pid, signal.SIGTERM),
              "building": report_building(runs), "figures written": figures_written(runs)}
    assert cmd.wait_for(checks[moment]), cmd.finish()
    os.kill(cmd.pid, signum)
    assert_clean_exit(cmd, signum)
    assert leftovers(runs) == [] and list(tmpdir.iterdir()) == []
    assert snapshot(runs) == before


# ---- lab report -o DIR: whose folder it is ---------------------------------------------------

def _missing(path: Path) -> None:
    pass


def _empty(mode: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.mkdir()
        path.chmod(mode)
    return make


def _with(name: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.mkdir()
        (path / name).write_text("mine\n")
    return make


def _a_file(path: Path) -> None:
    path.write_text("not a folder\n")


def _marked(mode: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.mkdir()
        (path / MARKER).write_text("{}\n")
        (path / "report.md").write_text("an older report\n")
        (path / "stale.png").write_bytes(b"old")
        path.chmod(mode)
    return make


# (case, make the folder, refused?, mode afterwards or None, same folder (inode) afterwards)
OUT_CASES = [
    ("missing", _missing, False, None, False),
    ("empty 0700", _empty(0o700), False, 0o700, True),
    ("empty 0750", _empty(0o750), False, 0o750, True),
    ("empty 0777", _empty(0o777), False, 0o777, True),
    ("notes inside", _with("notes.md"), True, None, True),
    ("only a hidden file", _with(".keep"), True, None, True),
    ("a report.md of mine", _with("report.md"), True, None, True),
    ("a file", _a_file, True, None, True),
    ("older report 0700", _marked(0o700), False, 0o700, False),
    ("older report 0755", _marked(0o755), False, 0o755, False),
]


@pytest.mark.parametrize(("case", "make", "refused", "mode", "same"), OUT_CASES,
                         ids=[c[0] for c in OUT_CASES])
def test_report_out_dir(finished: Path, tmp_path: Path, case: str,
                        make: Callable[[Path], None], refused: bool, mode: int | None,
                        same: bool) -> None:
    out = tmp_path / "out"
    make(out)
    before = snapshot(out) if out.is_dir() else None
    inode = out.stat().st_ino if out.exists() else None
    if refused:
        content = out.read_bytes() if out.is_file() else None
        with pytest.raises(ConfigError, match="not a lab report|not a folder"):
            write_report(finished, out_dir=out)
        assert (snapshot(out) if out.is_dir() else None) == before
        assert (out.read_bytes() if out.is_file() else None) == content
    else:
        write_report(finished, out_dir=out)
        assert (out / "report.md").is_file() and (out / MARKER).is_file()
        assert not (out / "stale.png").exists()
        assert sorted(p.name for p in out.iterdir()) == sorted([".lab-report", "figures",
                                                                 "report.md"])
        if mode is not None:
            assert out.stat().st_mode & 0o7777 == mode, oct(out.stat().st_mode)
    if same:
        assert out.stat().st_ino == inode  # the very folder, not a replacement
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder beside it


def test_report_into_empty_folder_undone_on_failure(finished: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the finished report is moved into an empty folder leaves it empty."""
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(dst)).name == MARKER:
            raise OSError(28, "No space left on device", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        write_report(finished, out_dir=out)
    assert list(out.iterdir()) == [] and out.stat().st_mode & 0o7777 == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_report_keeps_an_empty_folders_mode(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "private"
    out.mkdir(mode=0o700)
    proc = subprocess.run([sys.executable, "-m", "lab", "report", "-o", str(out), "--runs-dir",
                           str(finished)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out / 'report.md'}\n"
    assert out.stat().st_mode & 0o7777 == 0o700
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine\n")
    proc = subprocess.run([sys.executable, "-m", "lab", "report", "-o", str(notes),
                           "--runs-dir", str(finished)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.startswith("lab: error: ")
    assert len(proc.stderr.splitlines()) == 1
    assert [p.name for p in notes.iterdir()] == ["todo.txt"]


# ---- lab tui --------------------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="pty and /proc")
@pytest.mark.parametrize("signum", (signal.SIGTERM, signal.SIGHUP),
                         ids=lambda s: signal.Signals(s).name)
def test_console_quits_on_sigterm_and_sighup(tmp_path: Path, signum: int) -> None:
    """The console in a real terminal (a pty): the signal quits it like `q`, exit 130, the
    terminal given back (alternate screen left), no traceback, no process left."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: the console, as a user starts it
        os.environ.update(PYTHONPATH=str(ROOT), TERM="xterm-256color")
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "lab", "tui", "--runs-dir",
                                  str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 600, 1000))
    screen = bytearray()

    def read_until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + MOMENT_LIMIT_S
        while not done() and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the console closed the terminal
                    return
                if not chunk:
                    return
                screen.extend(chunk)

    try:
        read_until(lambda: b"\x1b[?1049h" in screen and b"runs" in screen)  # drawn
        assert b"\x1b[?1049h" in screen, bytes(screen[-2000:])
        start = len(screen)
        os.kill(pid, signum)
        read_until(lambda: False)  # to the end of its output
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    after = bytes(screen[start:])
    assert os.waitstatus_to_exitcode(status) == 130, after[-2000:]
    assert b"\x1b[?1049l" in after and b"Traceback" not in after, after[-2000:]
    assert wait_gone(pid) == []

"""Warm job processes: a template per worker slot that has imported torch and the engine once,
and forks a job process on request, so a job starts in milliseconds instead of seconds.

The template (`python -m lab.entry.template`, the slot's CUDA_VISIBLE_DEVICES in its
environment) imports what a job imports, never touches CUDA (checked before every fork: the
CUDA driver library must not be loaded), never opens the queue, and waits for requests on its
stdin. Per request it forks twice: the job process's first parent exits at once, so the job is
re-parented to the worker, which declares itself a child subreaper (Linux
`PR_SET_CHILD_SUBREAPER`). The job process is then the worker's own child, exactly as if the
worker had started it: it waits on it, signals it and reads its exit status (`Adopted`), and
the job watches the worker as its parent. Everything that goes wrong (no subreaper, a template
that died, hangs or reports CUDA in use) falls back to starting a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
START_TIMEOUT_S = 180.0  # a template still importing after this is given up on
REPLY_TIMEOUT_S = 30.0


def become_subreaper(on: bool = True) -> bool:
    """Orphaned descendants are re-parented to this process (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Adopted:
    """A job process forked by a template and re-parented to us: the part of `Popen` that
    the worker uses (pid, poll, wait, send_signal, kill, returncode)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never a reused pid: ours stays a zombie until reaped
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Template:
    """The worker's handle on one template process."""

    def __init__(self, visible: str, say: Callable[[str], None], slot: str = "cpu",
                 module: str = "lab.entry.template") -> None:
        self.say, self.slot = say, slot
        self.t0 = time.monotonic()
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env)
        self.ready_s: float | None = None
        self.broken: str | None = None
        self._buffer = b""

    @property
    def starting(self) -> bool:
        """Still importing: worth waiting for rather than starting a cold interpreter."""
        self._check()
        return self.ready_s is None and self.broken is None

    @property
    def ready(self) -> bool:
        self._check()
        return self.ready_s is not None and self.broken is None

    def _check(self) -> None:
        if self.broken is not None or self.ready_s is not None:
            if self.broken is None and self.proc.poll() is not None:
                self._give_up(f"the job template exited with code {self.proc.returncode}")
            return
        reply = self._read(0.0)
        if reply is not None:
            if "ready" in reply:
                self.ready_s = time.monotonic() - self.t0
                self.say(f"job template warm for slot {self.slot} in {self.ready_s:.1f}s: jobs "
                         f"start without importing torch (pid {self.proc.pid})")
            else:
                self._give_up(f"the job template cannot fork jobs: {reply.get('error')}")
        elif self.proc.poll() is not None:
            self._give_up(f"the job template exited with code {self.proc.returncode}")
        elif time.monotonic() - self.t0 > START_TIMEOUT_S:
            self._give_up(f"the job template was not ready in {START_TIMEOUT_S:.0f}s")

    def _read(self, timeout: float) -> dict | None:
        """One reply line, or None when none came within `timeout`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self.proc.stdout], [], [], left)
            if not readable:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            return {"error": f"unreadable reply {line[:80]!r}"}
        return reply if isinstance(reply, dict) else {"error": f"unreadable reply {reply!r}"}

    def fork(self, argv: list[str], log: Path) -> Adopted | None:
        """A job process running `python -m lab.jobrun <argv>` with its output in `log`, our
        child; None (and the template given up on) when it could not be made."""
        if not self.ready:
            return None
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            self._give_up(f"the job template is gone ({exc})")
            return None
        reply = self._read(REPLY_TIMEOUT_S)
        pid = reply.get("pid") if reply else None
        if not isinstance(pid, int) or pid <= 0:
            self._give_up(f"the job template did not fork: "
                          f"{reply.get('error') if reply else 'no reply'}")
            return None
        return Adopted(pid)

    def _give_up(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            self.say(f"{why}; jobs start in a fresh interpreter")
        self.close()

    def close(self) -> None:
        """End the template: EOF on its stdin, then a kill if it lingers."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def reap_strays(known: set[int]) -> list[int]:
    """Reap zombie children we did not start: orphans re-parented to us as the subreaper (a
    job's own subprocesses after the job died). Those we track are left to their owners."""
    me, reaped = os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return reaped
    for entry in entries:
        if not entry.isdigit() or int(entry) in known:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)
                reaped.append(int(entry))
    return reaped


def close_all(templates: dict[str, Template]) -> None:
    for template in templates.values():
        template.close()



"""`python -m lab.entry.template`: a worker slot's warm template (see `lab.queue.template`).

It imports what a job process imports, says `{"ready": true}` on stdout, then reads one request
a line on stdin (`{"argv": [...], "log": PATH}`) and answers `{"pid": N}`: a job process forked
from it, started through an intermediate child that exits at once, so the job ends up the
worker's child (the worker is a subreaper). EOF on stdin (the worker closed it or died) ends it.
A job process is `python -m lab.jobrun ARGV` in every way that matters: default signal
handlers, its output in its own log, stdin from /dev/null, the slot's environment (inherited:
the template was started with it), the worker as its parent before it looks at the queue.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# What a job process imports before its first step (torch, torchvision, the engine, the data
# sets' readers, the progress printer): imported once here instead of once per job.
WARM_MODULES = (
    "torch", "torchvision", "numpy", "PIL.Image",
    "lab.entry.jobrun", "lab.queue.jobrun", "lab.launch.run", "lab.launch.session",
    "lab.views.progress", "lab.core.models", "lab.data", "lab.data.digits",
)
REPARENT_WAIT_S = 5.0


def cuda_touched() -> bool:
    """Whether the CUDA driver has been initialised in this process: a fork would then hand the
    job a CUDA state it cannot use (CUDA does not survive fork), so the template must not fork.
    Loaded is not initialised (torch may link the driver library): when it is loaded, ask it,
    since `cuDeviceGetCount` answers CUDA_ERROR_NOT_INITIALIZED (3) before `cuInit`."""
    try:
        if "libcuda.so" not in Path("/proc/self/maps").read_text():
            return False
        driver = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD)
        count = ctypes.c_int()
        return driver.cuDeviceGetCount(ctypes.byref(count)) != 3
    except (OSError, AttributeError):
        return True  # cannot tell: do not risk it


_REPLIES = 1  # the pipe to the worker; main() moves it off stdout


def _reply(message: dict[str, Any]) -> None:
    os.write(_REPLIES, json.dumps(message).encode() + b"\n")


def _warm() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional reader missing: the job imports it (or fails) itself
            continue


def _run_job(request: dict[str, Any], worker: int) -> None:
    """In the forked job process: become `python -m lab.jobrun ARGV`; never returns."""
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.argv = ["-m", *request["argv"]]
        deadline = time.monotonic() + REPARENT_WAIT_S
        while os.getppid() != worker and time.monotonic() < deadline:
            time.sleep(0.001)  # the intermediate parent is exiting
        from lab.entry.jobrun import main

        code = main(list(request["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the job's log, as a fresh process would
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # nothing left to tell it to
                stream.flush()
        os._exit(code)


def _fork_job(request: dict[str, Any], worker: int) -> int:
    """Fork twice; the job's pid once its first parent has exited (it is then the worker's)."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate: start the job, say its pid, go
        try:
            os.close(read)
            job = os.fork()
            if job == 0:
                os.close(write)
                os.close(_REPLIES)
                _run_job(request, worker)
            os.write(write, str(job).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read()
    os.waitpid(middle, 0)
    return int(text)


def main() -> int:
    global _REPLIES
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    # Replies get a descriptor of their own; whatever an import prints goes to stderr.
    _REPLIES = os.dup(1)
    os.dup2(2, 1)
    worker = os.getppid()
    t0 = time.monotonic()
    _warm()
    if cuda_touched():
        _reply({"error": "CUDA was initialised while importing"})
        return 1
    _reply({"ready": True, "seconds": round(time.monotonic() - t0, 3)})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("argv"), list):
                raise ValueError(f"not a request: {line[:80]!r}")
            if cuda_touched():
                raise RuntimeError("CUDA is initialised in the template")
            if os.getppid() != worker:
                return 0  # our worker is gone
            _reply({"pid": _fork_job(request, worker)})
        except Exception as exc:  # noqa: BLE001 - the worker falls back to a fresh interpreter
            _reply({"error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())

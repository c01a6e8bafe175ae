"""Workers: claim queued jobs and run each in its own process, on its own GPUs.

A worker owns a few slots (`--gpus 0,1` → two; `all` → one per visible CUDA device; no GPU or
`cpu` → one CPU slot). Every poll it renews its lease (the heartbeat), reaps finished job
processes, requeues jobs of dead workers, and claims jobs while slots are free. A job takes one
GPU slot per process (`nproc`, data-parallel) and is started only when that many are free; the
best job that fits goes first, so a job waiting for more GPUs does not hold up smaller ones. A
job runs in `python -m lab.jobrun` with `CUDA_VISIBLE_DEVICES` set to its slots' GPUs ('' on
the CPU slot), so a crash or an out-of-memory error fails that job and the worker goes on.

Latency: between polls the worker watches the queue file's data version (a cheap read), so a
submitted job, a cancel or a finished job wakes it within `WAKE_S`, not a whole poll later.
Each one-process slot keeps a warm template (`lab.queue.template`) that has imported torch and
the engine, and forks each job process from it; a job process forked so is still the worker's
child, with its own log, signals and exit status. Jobs are claimed once the slot's template is
warm (or has failed: then a fresh interpreter, as before); `LAB_JOB_TEMPLATE=0` (or
`warm=False`) starts none.

Stopping: `lab worker stop` sets a flag in the database, read every poll: the worker claims
nothing more and exits when its jobs are done (`--now`: it cancels them first; their runs are
kept and marked cancelled). SIGTERM or Ctrl-C interrupts its jobs (they resume at the next
worker's start). `--detach` re-runs the same command in a new session with its output in
`runs/workers/worker-<pid>.log`, so a closed terminal or SSH link does not reach it; every
worker also writes `runs/workers/worker-<pid>.pid` while it runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.errors import BusyError, ConfigError, RunFailed
from lab.queue.jobs import Job, JobQueue, host_name, job_log_path, now_text
from lab.queue.notify import EndHooks
from lab.queue.template import Adopted, Template, become_subreaper, reap_strays
from lab.runs import State
from lab.runs.store import atomic_write_bytes

ON_EXIT_GRACE_S = 30.0  # how long an exiting worker lets its on-end commands finish
STOP_GRACE_S = 30.0  # how long a stopping worker waits for its jobs to record their state
WAKE_S = 0.05  # how often an idle worker looks whether the queue file changed


@dataclass(frozen=True)
class Slot:
    name: str  # "cpu", or the GPU's index as the worker sees it
    visible: str  # the job's CUDA_VISIBLE_DEVICES ("" hides every GPU from a CPU job)


def parse_gpus(spec: str, device_count: int, visible_env: str | None = None) -> list[Slot]:
    """Turn `--gpus` into slots. GPU numbers are those the worker sees (cuda:N); when the
    worker itself runs under CUDA_VISIBLE_DEVICES they are mapped back through it."""
    spec = spec.strip().lower()
    if spec == "cpu" or (spec == "all" and device_count == 0):
        return [Slot("cpu", "")]
    if spec == "all":
        indices = list(range(device_count))
    else:
        try:
            indices = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"--gpus {spec!r}: expected all, cpu or GPU numbers like 0,1") \
                from None
        if not indices or len(set(indices)) != len(indices):
            raise ConfigError(f"--gpus {spec!r}: expected distinct GPU numbers like 0,1")
        missing = [i for i in indices if not 0 <= i < device_count]
        if missing:
            raise ConfigError(f"--gpus {spec!r}: no GPU {missing[0]} "
                              f"({device_count} CUDA device(s) visible)",
                              hint="see `lab doctor`, or use --gpus cpu")
    mapped = [v.strip() for v in visible_env.split(",")] if visible_env else None
    return [Slot(str(i), mapped[i] if mapped and i < len(mapped) else str(i)) for i in indices]


def visible_device_count() -> int:
    import torch  # deferred: only `--gpus all` or GPU numbers need it

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pid_file(runs_dir: Path, pid: int) -> Path:
    return Path(runs_dir) / "workers" / f"worker-{pid}.pid"


def worker_log(runs_dir: Path, pid: int) -> Path:
    return Path(runs_dir) / "workers" / f"worker-{pid}.log"


@dataclass
class Running:
    job: Job
    proc: subprocess.Popen | Adopted
    log: IO[bytes]
    slots: list[Slot]


class Worker:
    """The loop of one worker process; `run()` returns when it has been asked to stop."""

    def __init__(self, runs_dir: Path, data_dir: Path, slots: list[Slot], poll: float = 1.0,
                 heartbeat: float = 5.0, exit_when_idle: bool = False, detached: bool = False,
                 say: Callable[[str], None] | None = None, warm: bool | None = None,
                 on_end: str | None = None) -> None:
        self.runs_dir, self.data_dir = Path(runs_dir).resolve(), Path(data_dir).resolve()
        self.slots, self.poll, self.heartbeat_s = slots, poll, heartbeat
        self.lease_s = 3 * heartbeat  # three missed heartbeats and the lease is gone
        self.exit_when_idle, self.detached = exit_when_idle, detached
        self.say = say or (lambda text: print(f"{now_text()} {text}", flush=True))
        self.pid = os.getpid()
        self.id = f"{host_name()}:{self.pid}:{secrets.token_hex(2)}"
        self.queue = JobQueue.open(self.runs_dir)
        self.running: dict[str, Running] = {}  # first slot's name -> its job
        self.cancelled_all = False
        self._next_beat = 0.0
        # LAB_JOB_TEMPLATE=0: every job in a fresh interpreter (no template's memory)
        self.warm = os.environ.get("LAB_JOB_TEMPLATE", "1") != "0" if warm is None else warm
        self.templates: dict[str, Template] = {}  # slot name -> its warm template
        self._subreaper = False
        self._watch: sqlite3.Connection | None = None
        self._version: int | None = None
        self.hooks = EndHooks(on_end, self.runs_dir, self.say)  # `--on-end CMD`

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        pidfile = pid_file(self.runs_dir, self.pid)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        log = str(worker_log(self.runs_dir, self.pid)) if self.detached else None
        previous = signal.getsignal(signal.SIGTERM)
        try:  # everything inside: a signal at any point still runs the `finally`
            signal.signal(signal.SIGTERM, _raise_interrupt)
            self.queue.register_worker(self.id, self.pid, [s.name for s in self.slots],
                                       self.lease_s, detached=self.detached, log=log)
            atomic_write_bytes(pidfile, f"{self.pid}\n".encode())  # `detach` waits for it whole
            self.say(f"worker {self.id} started: slots {', '.join(s.name for s in self.slots)}; "
                     f"runs {self.runs_dir}")
            self._start_templates()
            self._loop()
        except KeyboardInterrupt:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._interrupt_jobs()
            raise
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            self.hooks.drain(ON_EXIT_GRACE_S)
            for template in self.templates.values():
                template.close()
            if self._subreaper:
                become_subreaper(False)
            if self._watch is not None:
                self._watch.close()
            self.queue.unregister_worker(self.id)  # nothing to delete if it never registered
            pidfile.unlink(missing_ok=True)
            self.queue.close()
        self.say(f"worker {self.id} exits")

    def _start_templates(self) -> None:
        """A warm template per one-process slot, where jobs can be adopted (Linux)."""
        if not self.warm or not become_subreaper():
            return
        self._subreaper = True
        for slot in self.slots:
            try:
                self.templates[slot.name] = Template(slot.visible, self.say, slot.name)
            except OSError as exc:
                self.say(f"no job template for slot {slot.name} ({exc}): jobs start in a "
                         "fresh interpreter")

    def _loop(self) -> None:
        while True:
            try:
                if self._tick():
                    return
            except (sqlite3.OperationalError, BusyError) as exc:  # locked past the timeout
                self.say(f"queue database error, trying again: {exc}")
            self._sleep(self.poll)

    def _sleep(self, seconds: float) -> None:
        """Until the next poll or heartbeat, or sooner when another process commits to the
        queue (a submit, a cancel, a job's end) or a template becomes warm."""
        deadline = min(time.monotonic() + seconds, self._next_beat)
        warming = [t for t in self.templates.values() if t.starting]
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(WAKE_S, left))
            if self._queue_changed() or any(t.ready for t in warming):
                return

    def _queue_changed(self) -> bool:
        try:
            if self._watch is None:
                uri = f"file:{urllib.parse.quote(str(self.queue.path.resolve()))}?mode=ro"
                self._watch = sqlite3.connect(uri, uri=True, timeout=0.05)
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return False  # busy or gone: the next poll looks anyway
        changed = self._version is not None and version != self._version
        self._version = version
        return changed

    def _tick(self) -> bool:
        """One look at the queue; True when the worker should exit."""
        now = time.monotonic()
        if now >= self._next_beat:
            self.queue.heartbeat(self.id, self.lease_s)
            self._next_beat = now + self.heartbeat_s
        self._reap()
        self.hooks.poll()
        if self._subreaper:
            reap_strays({r.proc.pid for r in self.running.values()}
                        | {t.proc.pid for t in self.templates.values()} | self.hooks.pids)
        stop = self.queue.worker_stop(self.id)
        if stop == 2 and not self.cancelled_all:
            for r in self.running.values():
                with contextlib.suppress(ConfigError):  # it finished meanwhile
                    self.queue.cancel(r.job.id)
            self.cancelled_all = True
        if stop:
            return not self.running
        for job in self.queue.requeue_orphans():
            self.say(f"job {job.id}: its worker died; marked {job.state}")
        claimed = self._fill_slots()
        warming = any(t.starting for t in self.templates.values())
        if (self.exit_when_idle and not self.running and not claimed and not warming
                and not self.queue.awaiting_requeue()):
            self.say("queue empty: exiting (--exit-when-idle)")
            return True
        return False

    # ---- jobs ------------------------------------------------------------------------------
    def _fill_slots(self) -> bool:
        """Claim jobs while slots are free. On GPUs a job takes as many slots as it has
        processes (`Job.slots`) and is claimed only when that many are free; the CPU slot
        takes any job (its processes share the cores)."""
        claimed = False
        while self.queue.has_claimable():
            busy = {s.name for r in self.running.values() for s in r.slots}
            free = [s for s in self.slots if s.name not in busy]
            if not free:
                break
            template = self.templates.get(free[0].name)
            if template is not None and template.starting:
                break  # claimed once it is warm: sooner than a cold start
            cpu = free[0].name == "cpu"
            job = self.queue.claim(self.id, self.pid, ",".join(s.name for s in free),
                                   self.lease_s, max_slots=None if cpu else len(free))
            if job is None:
                break
            taken = free[:1] if cpu else free[:job.slots]
            claimed = True
            self._spawn(taken, job)
        return claimed

    def _spawn(self, slots: list[Slot], job: Job) -> None:
        path = job_log_path(self.runs_dir, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "ab")  # noqa: SIM115 - stays open for the job process's lifetime
        names = ",".join(s.name for s in slots)
        log.write(f"--- {now_text()} job {job.id} attempt {job.attempts} on {names} "
                  f"(worker {self.id}) ---\n".encode())
        log.flush()
        visible = ",".join(s.visible for s in slots if s.visible)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONUNBUFFERED": "1"}
        argv = [str(job.id), "--attempt", str(job.attempts), "--runs-dir", str(self.runs_dir),
                "--data-dir", str(self.data_dir)]
        template = self.templates.get(slots[0].name)
        proc: subprocess.Popen | Adopted | None = None
        if template is not None and len(slots) == 1 and int(job.config.get("nproc") or 1) == 1:
            proc = template.fork(argv, path)  # None: it is given up on, and said why
        try:
            if proc is None:
                proc = subprocess.Popen([sys.executable, "-m", "lab.jobrun", *argv],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env)
        except OSError as exc:  # out of processes or memory: this job fails, the worker goes on
            log.close()
            self.queue.finish(job.id, job.attempts, State.FAILED,
                              error=f"could not start the job process: {exc}")
            self.say(f"job {job.id} failed: could not start the job process: {exc}")
            self._ended(self.queue.get(job.id))
            return
        self.queue.set_child(job.id, job.attempts, proc.pid)
        self.running[slots[0].name] = Running(job, proc, log, slots)
        resumed = f", resuming run {job.run_id}" if job.run_id else ""
        self.say(f"job {job.id} ({job.label}) started on {names}: attempt {job.attempts}, "
                 f"pid {proc.pid}{resumed}")

    def _reap(self, interrupted: bool = False) -> None:
        for name, r in list(self.running.items()):
            code = r.proc.poll()
            if code is None:
                continue
            r.log.close()
            del self.running[name]
            if self.queue.get(r.job.id).state == State.RUNNING:
                # The job process ended without recording an outcome: it crashed or was killed.
                how = (f"killed by signal {signal.Signals(-code).name}" if code < 0
                       else f"exited with code {code}")
                if code == -signal.SIGKILL:
                    how += " (out of memory?)"
                state = State.INTERRUPTED if interrupted else State.FAILED
                self.queue.finish(r.job.id, r.job.attempts, state,
                                  error=f"job process {how}; see `lab logs {r.job.id}`")
            job = self.queue.get(r.job.id)
            detail = f": {job.error}" if job.error else ""
            self.say(f"job {job.id} {job.state}{detail}")
            self._ended(job)

    def _ended(self, job: Job) -> None:
        """An attempt is over: the on-end command hears of it unless the job is queued
        again (a retry to come is not an end)."""
        if job.state != State.QUEUED:
            self.hooks.job_ended(job)

    def _interrupt_jobs(self) -> None:
        """Stop every job process (SIGTERM: each records `interrupted` and its run stays
        resumable), wait for them, and kill what does not stop in time."""
        for r in self.running.values():
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.running and time.monotonic() < deadline:
            self._reap(interrupted=True)
            time.sleep(0.1)
        for r in self.running.values():
            r.proc.kill()
            r.proc.wait()
        self._reap(interrupted=True)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def detach(argv: list[str], runs_dir: Path, timeout: float = 120.0) -> tuple[int, Path]:
    """Start `python -m lab <argv>` as a worker in a new session (no terminal, no SIGHUP),
    output to its log; return once it has registered, or fail with the log's last line."""
    runs_dir = Path(runs_dir).resolve()
    workers = runs_dir / "workers"
    workers.mkdir(parents=True, exist_ok=True)
    starting = workers / f".starting-{secrets.token_hex(4)}.log"
    with open(starting, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab", *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log_path = worker_log(runs_dir, proc.pid)
    os.replace(starting, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file(runs_dir, proc.pid).exists():
            return proc.pid, log_path
        code = proc.poll()
        if code is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit code {code}"
            raise RunFailed(f"the worker did not start: {last.removeprefix('lab: error: ')}",
                            hint=f"log: {log_path}")
        time.sleep(0.05)
    proc.kill()
    raise RunFailed(f"the worker did not start within {timeout:.0f}s", hint=f"log: {log_path}")

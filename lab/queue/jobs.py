"""The persistent job queue shared by `lab submit`, the workers and the TUI: `JobQueue`.

The database file and its transactions are `lab.queue.db`'s; this module is the state machine on
top. Every write is one `BEGIN IMMEDIATE` transaction, so a claim's "find the best waiting job,
mark it running" cannot interleave with another worker's claim: two workers never run one job.

A job moves queued → running → done | failed | cancelled. `interrupted` means its process was
stopped before the end (its worker died, was killed, or was interrupted by a signal); such a job
is claimed again like a queued one and resumes its run from the last checkpoint. Every update
made on behalf of a running job names the attempt it belongs to, so a process left over from
an earlier attempt can never overwrite a later one.

A job's `backend` is `local` (run by our workers) or `slurm` (an sbatch job that claims the
job for itself, see `lab.queue.slurm`): local workers never claim, requeue or lease Slurm jobs.

The queue assumes the runs directory is on a local disk of one machine (SQLite's locking is not
reliable over network file systems): a job is requeued only when its lease has expired *and*
both its worker and its job process are gone from this host. The lease alone could expire
under a worker that is merely slow; the pid check alone is wrong across pid namespaces.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError, NotFoundError
from lab.queue.db import QueueDB
from lab.runs import CLAIMABLE as CLAIMABLE  # re-exported: the queue's vocabulary
from lab.runs import JOB_FINISHED, State, pid_alive
from lab.shapes import ascii_int

FINISHED = JOB_FINISHED
MAX_PRIORITY = 1_000_000


def host_name() -> str:
    return os.uname().nodename


def now_text() -> str:
    """Local time for log lines."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def check_priority(priority: int) -> int:
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise ConfigError(f"priority={priority}: must be between {-MAX_PRIORITY} and "
                          f"{MAX_PRIORITY}")
    return priority


def job_log_path(runs_dir: Path, job_id: int) -> Path:
    """What a job's process printed, every attempt appended: `runs/jobs/<id>.log`."""
    return Path(runs_dir) / "jobs" / f"{job_id}.log"


def parse_job_id(ref: str | int) -> int:
    """`12` or `#12`; anything else is a usage error, before the database is touched."""
    value = ascii_int(str(ref).strip().removeprefix("#"))  # ASCII digits only: not `²`
    if value is None or value == 0:
        shown = repr(ref) if len(str(ref)) <= 24 else repr(f"{str(ref)[:20]}...")
        raise ConfigError(f"{shown} is not a job id (a number, as `lab queue` shows)")
    return value


# The same rule as `slots_needed`, for the claim query (configs are stored as JSON).
_SLOTS_SQL = ("(CASE WHEN json_extract(config, '$.device') = 'cpu' THEN 1 "
              "ELSE max(1, coalesce(json_extract(config, '$.nproc'), 1)) END)")


def slots_needed(config: dict[str, Any]) -> int:
    if config.get("device") == "cpu":
        return 1
    return max(1, int(config.get("nproc") or 1))


@dataclass(frozen=True)
class Job:
    id: int
    config: dict[str, Any]
    label: str
    priority: int
    state: str
    attempts: int
    gpu: str | None
    run_id: str | None
    worker: str | None
    pid: int | None  # the worker's
    child_pid: int | None  # the job process
    host: str | None
    heartbeat: float | None
    lease_until: float | None
    cancel_requested: bool
    created: float
    started: float | None
    finished: float | None
    error: str | None
    backend: str = "local"  # or "slurm"
    slurm_id: str | None = None  # the sbatch job id of the latest attempt
    slurm_options: dict[str, Any] | None = None  # SlurmOptions, and `requeued`: the requeues
    study: str | None = None  # its config's study (lab.queue.studies); None for a loose job

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["config"] = json.loads(data["config"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        if data.get("slurm_options"):
            data["slurm_options"] = json.loads(data["slurm_options"])
        return cls(**data)

    @property
    def display_state(self) -> str:
        return "cancelling" if self.state == State.RUNNING and self.cancel_requested else self.state

    @property
    def slots(self) -> int:
        """GPUs the job takes on a GPU worker: one per process, one for a CPU job."""
        return slots_needed(self.config)

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config, strict=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, timestamps as ISO 8601 (UTC)."""
        d = dict(self.__dict__)
        for key in ("heartbeat", "lease_until", "created", "started", "finished"):
            d[key] = iso(d[key])
        return d


def _refuse_repeats(db: sqlite3.Connection, configs: list[RunConfig]) -> None:
    """A study holds each config (seed included) once: a second copy would count twice in its
    statistics. Checked against the study's jobs under the submit's own write lock."""
    seen: dict[tuple[str, str], str] = {}
    for study in {c.study for c in configs if c.study}:
        for job_id, text in db.execute("SELECT id, config FROM jobs WHERE study = ?", (study,)):
            seen[(study, _canonical(json.loads(text)))] = f"job {job_id}"
    for n, config in enumerate(configs, 1):
        if not config.study:
            continue
        key = (config.study, _canonical(config.to_dict()))
        if key in seen:
            raise ConfigError(f"study {config.study} already holds this config with seed "
                              f"{config.seed} ({seen[key]})",
                              hint="--seed N starts the seeds elsewhere; `lab retry --study` "
                                   "runs failed jobs again")
        seen[key] = f"config {n} of this submit"


def _canonical(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@dataclass(frozen=True)
class WorkerRow:
    id: str
    pid: int
    host: str
    slots: list[str]
    detached: bool
    log: str | None
    started: float
    heartbeat: float
    lease_until: float
    stop: int  # 0 run, 1 finish the current jobs then exit, 2 cancel them and exit

    @property
    def alive(self) -> bool:
        """A worker is alive while its process is (on another host: while its lease holds)."""
        if self.host != host_name():
            return time.time() <= self.lease_until
        return pid_alive(self.pid)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for key in ("started", "heartbeat", "lease_until"):
            d[key] = iso(d[key])
        return d


class JobQueue(QueueDB):
    """The queue on one connection to `runs/lab.db`; open one per process."""

    def _job(self, db: sqlite3.Connection, job_id: int) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id} in {self.path}", hint="see `lab queue`")
        return Job.from_row(row)

    # ---- jobs ------------------------------------------------------------------------------
    def submit(self, configs: list[RunConfig], priority: int = 0, backend: str = "local",
               slurm_options: dict[str, Any] | None = None) -> list[Job]:
        """Queue configs in one transaction: all of them or, on any error, none."""
        check_priority(priority)
        if backend not in ("local", "slurm"):
            raise ValueError(backend)
        options = json.dumps(slurm_options) if slurm_options is not None else None
        with self._write() as db:
            now = time.time()  # inside the lock: `created` follows commit order
            _refuse_repeats(db, configs)
            ids = [db.execute(
                "INSERT INTO jobs (config, label, priority, created, backend, slurm_options, "
                "study) VALUES (?,?,?,?,?,?,?)",
                (json.dumps(c.to_dict()), c.label, priority, now, backend, options,
                 c.study or None)).lastrowid
                for c in configs]
        return [self.get(i) for i in ids]

    def study_jobs(self, study: str) -> list[Job]:
        """A study's jobs, oldest first."""
        rows = self._db.execute("SELECT * FROM jobs WHERE study = ? ORDER BY id",
                                (study,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def studies(self) -> list[str]:
        """Every study's name, oldest study first."""
        return [r[0] for r in self._db.execute(
            "SELECT study FROM jobs WHERE study IS NOT NULL GROUP BY study ORDER BY min(id)")]

    def cancel_waiting(self, study: str) -> tuple[list[Job], list[Job]]:
        """Cancel a study's waiting (queued or interrupted) jobs in one transaction; returns
        them and the study's running jobs, which are left running (`cancel` stops one)."""
        with self._write() as db:
            rows = db.execute("SELECT id FROM jobs WHERE study = ? AND state IN "
                              "('queued', 'interrupted') ORDER BY id", (study,)).fetchall()
            ids = [r[0] for r in rows]
            db.executemany("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, "
                           "finished = ? WHERE id = ?", [(time.time(), i) for i in ids])
            cancelled = [self._job(db, i) for i in ids]
            running = [Job.from_row(r) for r in db.execute(
                "SELECT * FROM jobs WHERE study = ? AND state = 'running' ORDER BY id",
                (study,))]
        return cancelled, running

    def get(self, job_id: int) -> Job:
        return self._job(self._db, job_id)

    def jobs(self, states: tuple[str, ...] | None = None) -> list[Job]:
        """Jobs in claim order (priority, then first in first out)."""
        sql = "SELECT * FROM jobs"
        args: tuple = ()
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args = states
        rows = self._db.execute(sql + " ORDER BY priority DESC, id", args).fetchall()
        return [Job.from_row(r) for r in rows]

    def claim(self, worker: str, pid: int, gpu: str, lease_s: float,
              job_id: int | None = None, backend: str = "local",
              max_slots: int | None = None) -> Job | None:
        """Atomically take the best claimable job (or `job_id`) of `backend` and mark it
        running for us (a Slurm job process claims its own job with backend 'slurm'). With
        `max_slots`, only a job needing at most that many GPUs (see `Job.slots`) is taken: the
        best that fits, so a job waiting for more GPUs does not hold up smaller ones; `gpu`
        then lists the free slots, and the job is recorded on as many of them as it takes."""
        with self._write() as db:
            now = time.time()  # inside the lock: `started` follows claim order
            if job_id is None:
                fits = f" AND {_SLOTS_SQL} <= ?" if max_slots is not None else ""
                args = (backend,) + ((max_slots,) if max_slots is not None else ())
                row = db.execute(
                    "SELECT id, config FROM jobs WHERE state IN ('queued', 'interrupted') "
                    f"AND backend = ?{fits} ORDER BY priority DESC, id LIMIT 1",
                    args).fetchone()
                if row is not None and max_slots is not None:
                    gpu = ",".join(gpu.split(",")[:slots_needed(json.loads(row["config"]))])
            else:
                row = db.execute("SELECT id FROM jobs WHERE id = ? AND state IN "
                                 "('queued', 'interrupted') AND backend = ?",
                                 (job_id, backend)).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, pid = ?,"
                " child_pid = NULL, host = ?, gpu = ?, heartbeat = ?, lease_until = ?,"
                " started = ?, finished = NULL, error = NULL WHERE id = ?",
                (worker, pid, host_name(), gpu, now, now + lease_s, now, row["id"]))
            return self._job(db, row["id"])

    def has_claimable(self) -> bool:
        """A cheap read, so idle workers do not take the write lock on every poll."""
        return self._db.execute("SELECT 1 FROM jobs WHERE state IN ('queued', 'interrupted') "
                                "AND backend = 'local' LIMIT 1").fetchone() is not None

    def _update_attempt(self, job_id: int, attempt: int, sql: str, args: tuple) -> bool:
        with self._write() as db:
            cur = db.execute(f"UPDATE jobs SET {sql} WHERE id = ? AND attempts = ? "
                             "AND state = 'running'", (*args, job_id, attempt))
            return cur.rowcount == 1

    def set_child(self, job_id: int, attempt: int, child_pid: int) -> bool:
        return self._update_attempt(job_id, attempt, "child_pid = ?", (child_pid,))

    def set_run(self, job_id: int, attempt: int, run_id: str) -> bool:
        return self._update_attempt(job_id, attempt, "run_id = ?", (run_id,))

    def finish(self, job_id: int, attempt: int, state: str, error: str | None = None) -> bool:
        """Record how an attempt ended; False when the attempt no longer owns the job."""
        if state not in (State.DONE, State.FAILED, State.CANCELLED, State.INTERRUPTED):
            raise ValueError(state)
        return self._update_attempt(job_id, attempt, "state = ?, error = ?, finished = ?",
                                    (state, error, time.time()))

    def set_slurm_id(self, job_id: int, slurm_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET slurm_id = ? WHERE id = ? AND backend = 'slurm'",
                       (slurm_id, job_id))

    def settle(self, job: Job, state: str, error: str | None = None) -> bool:
        """Record an outcome seen from outside the job's process (Slurm's view of it), only
        while the job is still as `job` was read: a newer attempt or an outcome the job
        recorded itself meanwhile is never overwritten."""
        if state not in (State.DONE, State.FAILED, State.CANCELLED, State.INTERRUPTED):
            raise ValueError(state)
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished = ? WHERE id = ? AND state = ? "
                "AND attempts = ? AND slurm_id IS ?",
                (state, error, time.time(), job.id, job.state, job.attempts, job.slurm_id))
            return cur.rowcount == 1

    def requeue_slurm(self, job: Job, slurm_options: dict[str, Any], note: str,
                      slurm_id: str | None = None) -> bool:
        """Queue a Slurm job again for its next Slurm job (`slurm_id`, or None until sbatch
        answers), with its options (which record the requeue) and a note: only while the job
        is still as `job` was read and no cancel is pending, so a requeue never overwrites a
        newer attempt, an outcome, a cancel or another requeue (`lab.queue.slurm.requeue`)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'queued', slurm_id = ?, slurm_options = ?, error = ?, "
                "finished = NULL WHERE id = ? AND backend = 'slurm' AND state = ? "
                "AND attempts = ? AND slurm_id IS ? AND cancel_requested = 0",
                (slurm_id, json.dumps(slurm_options), note, job.id, job.state, job.attempts,
                 job.slurm_id))
            return cur.rowcount == 1

    def cancel_requested(self, job_id: int) -> bool:
        row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
        return bool(row and row[0])

    def cancel(self, job_id: int) -> Job:
        """Queued (or interrupted): cancelled at once, it never runs. Running: flagged, and its
        job process stops at its next check (within a batch and ~0.5 s)."""
        with self._write() as db:
            job = self._job(db, job_id)
            if job.state in FINISHED:
                raise ConfigError(f"job {job_id} is already {job.state}: nothing to cancel")
            if job.state == State.RUNNING and not self._orphaned(job, time.time()):
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                db.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, "
                           "finished = ? WHERE id = ?", (time.time(), job_id))
            return self._job(db, job_id)

    def retry(self, job_id: int, fresh: bool = False) -> Job:
        """Queue a failed, cancelled or interrupted job again. It resumes its run from the last
        checkpoint unless `fresh` (which also allows re-running a done job). A Slurm job loses
        its old Slurm id and its record of requeues here (so it has its requeues again);
        `lab.queue.slurm.sbatch_job` submits it again."""
        with self._write() as db:
            job = self._job(db, job_id)
            allowed = (State.FAILED, State.CANCELLED, State.INTERRUPTED) + \
                ((State.DONE,) if fresh else ())
            if job.state not in allowed:
                hint = "`lab retry --fresh` runs it again from scratch" \
                    if job.state == State.DONE else None
                raise ConfigError(f"job {job_id} is {job.state}: nothing to retry", hint=hint)
            db.execute(
                "UPDATE jobs SET state = 'queued', cancel_requested = 0, slurm_id = NULL, "
                "error = NULL, finished = NULL, run_id = CASE WHEN ? THEN NULL ELSE run_id END, "
                "slurm_options = CASE WHEN json_valid(slurm_options) "
                "THEN json_remove(slurm_options, '$.requeued') ELSE slurm_options END "
                "WHERE id = ?", (fresh, job_id))
            return self._job(db, job_id)

    def _orphaned(self, job: Job, now: float) -> bool:
        return (job.state == State.RUNNING and (job.lease_until or 0) < now
                and job.host == host_name()
                and not pid_alive(job.pid) and not pid_alive(job.child_pid))

    def awaiting_requeue(self) -> bool:
        """Whether a running job here has lost its worker and job process but not yet its
        lease: it will become claimable (a worker draining the queue waits for it)."""
        rows = self._db.execute("SELECT * FROM jobs WHERE state = 'running' AND host = ? "
                                "AND backend = 'local'", (host_name(),)).fetchall()
        return any(not pid_alive(j.pid) and not pid_alive(j.child_pid)
                   for j in map(Job.from_row, rows))

    def requeue_orphans(self) -> list[Job]:
        """Running jobs whose lease expired and whose worker and job process are both gone from
        this host become `interrupted` (claimable; they resume from their checkpoint), or
        `cancelled` when a cancel was pending. Dead workers' rows are dropped. Slurm jobs are
        left to Slurm (`lab.queue.slurm.reconcile`)."""
        now = time.time()
        stale = self._db.execute("SELECT 1 FROM jobs WHERE state = 'running' AND "
                                 "backend = 'local' AND lease_until < ? LIMIT 1",
                                 (now,)).fetchone()
        requeued = []
        if stale is not None:
            with self._write() as db:
                rows = db.execute("SELECT * FROM jobs WHERE state = 'running' AND "
                                  "backend = 'local' AND lease_until < ?", (now,)).fetchall()
                for job in map(Job.from_row, rows):
                    if not self._orphaned(job, now):
                        continue
                    state = State.CANCELLED if job.cancel_requested else State.INTERRUPTED
                    db.execute("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ?",
                               (state, now, f"its worker (pid {job.pid}) died", job.id))
                    requeued.append(self._job(db, job.id))
        for worker in self.workers():
            if worker.host == host_name() and worker.lease_until < now and not worker.alive:
                self.unregister_worker(worker.id)
        return requeued

    # ---- workers ---------------------------------------------------------------------------
    def register_worker(self, worker_id: str, pid: int, slots: list[str], lease_s: float,
                        detached: bool = False, log: str | None = None) -> None:
        now = time.time()
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO workers (id, pid, host, slots, detached, log, "
                       "started, heartbeat, lease_until) VALUES (?,?,?,?,?,?,?,?,?)",
                       (worker_id, pid, host_name(), json.dumps(slots), int(detached), log, now,
                        now, now + lease_s))

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def heartbeat(self, worker_id: str, lease_s: float) -> None:
        """Renew the lease of a worker and of every job it runs, in one transaction."""
        now = time.time()
        with self._write() as db:
            db.execute("UPDATE workers SET heartbeat = ?, lease_until = ? WHERE id = ?",
                       (now, now + lease_s, worker_id))
            db.execute("UPDATE jobs SET heartbeat = ?, lease_until = ? WHERE worker = ? "
                       "AND state = 'running'", (now, now + lease_s, worker_id))

    def workers(self) -> list[WorkerRow]:
        rows = self._db.execute("SELECT * FROM workers ORDER BY started").fetchall()
        return [WorkerRow(**{**dict(r), "slots": json.loads(r["slots"]),
                             "detached": bool(r["detached"])}) for r in rows]

    def worker_stop(self, worker_id: str) -> int:
        row = self._db.execute("SELECT stop FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return int(row[0]) if row else 0

    def request_stop(self, now: bool = False, pid: int | None = None) -> list[WorkerRow]:
        """Ask live workers (all, or the one with `pid`) to exit after their current jobs, or
        (`now`) to cancel those jobs first. Returns the workers asked."""
        targets = [w for w in self.workers() if w.alive and (pid is None or w.pid == pid)]
        with self._write() as db:
            for w in targets:
                db.execute("UPDATE workers SET stop = MAX(stop, ?) WHERE id = ?",
                           (2 if now else 1, w.id))
        return targets

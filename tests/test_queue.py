"""The job queue on a real database file: schema, atomic claims across processes, the state
machine (cancel, retry, stale attempts), requeue of jobs whose worker died, GPU slots."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.errors import ConfigError, DataError, NotFoundError
from lab.levels import level_config
from lab.queue import JobQueue, parse_job_id
from lab.queue.db import SCHEMA_VERSION
from lab.queue.worker import Slot, parse_gpus
from lab.runs import pid_alive

TINY = level_config(3).replace(dataset="digits", image_size=16, epochs=2)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    with JobQueue.open(tmp_path / "runs") as q:
        yield q


def test_database_file_is_wal_with_a_busy_timeout(queue: JobQueue) -> None:
    assert queue.path.name == "lab.db" and queue.path.is_file()
    db = sqlite3.connect(queue.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= \
        {"jobs", "workers"}
    db.close()
    assert queue._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_readers_never_create_the_database(tmp_path: Path) -> None:
    assert JobQueue.open(tmp_path / "runs", create=False) is None
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_database_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lab.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a usable lab queue database"):
        JobQueue.open(tmp_path)


def test_claims_follow_priority_then_submission_order(queue: JobQueue) -> None:
    low = queue.submit([TINY], priority=-1)
    first = queue.submit([TINY, TINY.replace(epochs=3)])  # priority 0, in this order
    high = queue.submit([TINY], priority=7)
    assert [j.state for j in low + first + high] == ["queued"] * 4
    assert first[1].config["epochs"] == 3 and first[1].run_config() == TINY.replace(epochs=3)
    order = []
    while (job := queue.claim("w", os.getpid(), "cpu", lease_s=60)) is not None:
        assert job.state == "running" and job.attempts == 1 and job.gpu == "cpu"
        assert job.pid == os.getpid() and job.lease_until > time.time()
        order.append(job.id)
    assert order == [high[0].id, first[0].id, first[1].id, low[0].id]
    assert queue.has_claimable() is False


def test_a_claim_that_waited_for_the_lock_is_stamped_when_it_got_it(queue: JobQueue) -> None:
    """`started` must follow claim order even when a claim waits for another writer."""
    (job,) = queue.submit([TINY])
    locked, released = threading.Event(), []

    def hold_the_write_lock() -> None:  # as another process would
        other = sqlite3.connect(queue.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(0.3)
        released.append(time.time())
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold_the_write_lock)
    thread.start()
    assert locked.wait(timeout=30)
    claimed = queue.claim("w", os.getpid(), "cpu", lease_s=60)
    thread.join(timeout=30)
    assert claimed is not None and claimed.id == job.id
    assert claimed.started >= released[0]


def test_submit_is_all_or_nothing(queue: JobQueue) -> None:
    with pytest.raises(AttributeError):
        queue.submit([TINY, "not a config"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="priority"):
        queue.submit([TINY], priority=10**9)
    assert queue.jobs() == []


def _claim_all(path: str, start: multiprocessing.synchronize.Barrier,
               results: multiprocessing.Queue) -> None:
    """One competing worker process: claim until the queue is empty."""
    got = []
    with JobQueue(Path(path)) as q:
        start.wait()
        while (job := q.claim(f"w{os.getpid()}", os.getpid(), "cpu", lease_s=60)) is not None:
            got.append(job.id)
            time.sleep(0.002)  # "runs" it: without any work, whoever holds the lock keeps it
    results.put(got)


@pytest.mark.slow
def test_concurrent_claims_from_processes_take_each_job_exactly_once(queue: JobQueue) -> None:
    ids = [j.id for j in queue.submit([TINY] * 200)]
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(queue.path), start, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    try:
        claimed = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    flat = [i for part in claimed for i in part]
    assert sorted(flat) == ids  # every job once: none lost, none twice
    assert {j.attempts for j in queue.jobs()} == {1}
    assert len({j.worker for j in queue.jobs()}) >= 2  # they really competed


def test_cancel(queue: JobQueue) -> None:
    waiting, running = queue.submit([TINY, TINY])
    assert queue.claim("w", os.getpid(), "cpu", 60).id == waiting.id
    # a queued job: cancelled at once and never claimed
    assert queue.cancel(running.id).state == "cancelled"
    assert queue.claim("w", os.getpid(), "cpu", 60) is None
    # a running job: flagged; its process acknowledges
    flagged = queue.cancel(waiting.id)
    assert flagged.state == "running" and flagged.display_state == "cancelling"
    assert queue.cancel_requested(waiting.id)
    assert queue.finish(waiting.id, 1, "cancelled")
    with pytest.raises(ConfigError, match="already cancelled"):
        queue.cancel(waiting.id)
    with pytest.raises(NotFoundError, match="no job 99"):
        queue.cancel(99)


def test_a_stale_attempt_cannot_overwrite_a_newer_one(queue: JobQueue) -> None:
    (job,) = queue.submit([TINY])
    queue.claim("w", os.getpid(), "cpu", 60)
    assert queue.finish(job.id, 1, "interrupted")
    queue.claim("w", os.getpid(), "cpu", 60)  # attempt 2
    assert not queue.finish(job.id, 1, "failed", error="late news from attempt 1")
    assert not queue.set_run(job.id, 1, "someone-elses-run")
    assert queue.set_run(job.id, 2, "run-2")
    assert queue.finish(job.id, 2, "done")
    got = queue.get(job.id)
    assert (got.state, got.error, got.run_id, got.attempts) == ("done", None, "run-2", 2)


def test_retry(queue: JobQueue) -> None:
    (job,) = queue.submit([TINY])
    queue.claim("w", os.getpid(), "cpu", 60)
    with pytest.raises(ConfigError, match="running: nothing to retry"):
        queue.retry(job.id)
    queue.set_run(job.id, 1, "run-a")
    queue.finish(job.id, 1, "failed", error="boom")
    again = queue.retry(job.id)
    assert (again.state, again.run_id, again.error) == ("queued", "run-a", None)  # resumes
    queue.claim("w", os.getpid(), "cpu", 60)
    queue.finish(job.id, 2, "done")
    with pytest.raises(ConfigError, match="--fresh"):
        queue.retry(job.id)
    fresh = queue.retry(job.id, fresh=True)
    assert (fresh.state, fresh.run_id, fresh.attempts) == ("queued", None, 2)


def test_jobs_of_a_dead_worker_are_requeued_once_the_lease_expires(queue: JobQueue) -> None:
    orphan, alive, fresh, cancelling = queue.submit([TINY] * 4)
    gone = dead_pid()
    queue.claim("dead", gone, "cpu", lease_s=-1, job_id=orphan.id)  # lease already expired
    queue.set_run(orphan.id, 1, "run-x")
    queue.claim("me", os.getpid(), "cpu", lease_s=-1, job_id=alive.id)  # expired, pid alive
    queue.claim("dead", gone, "cpu", lease_s=60, job_id=fresh.id)  # dead, lease still valid
    # cancelled while its worker lived, then the worker died before acknowledging it
    queue.claim("dead2", gone, "cpu", lease_s=60, job_id=cancelling.id)
    assert queue.cancel(cancelling.id).state == "running"
    queue.heartbeat("dead2", lease_s=-1)  # its lease ran out
    requeued = {j.id: j.state for j in queue.requeue_orphans()}
    assert requeued == {orphan.id: "interrupted", cancelling.id: "cancelled"}
    assert queue.get(alive.id).state == "running" and queue.get(fresh.id).state == "running"
    assert "died" in queue.get(orphan.id).error
    # claimable again; the next attempt keeps the run, so it resumes
    again = queue.claim("w2", os.getpid(), "cpu", 60)
    assert (again.id, again.attempts, again.run_id) == (orphan.id, 2, "run-x")
    # cancelling an orphan needs nobody to acknowledge it
    (lost,) = queue.submit([TINY])
    queue.claim("dead", gone, "cpu", lease_s=-1, job_id=lost.id)
    assert queue.cancel(lost.id).state == "cancelled"


def test_workers_register_heartbeat_and_take_stop_requests(queue: JobQueue) -> None:
    queue.register_worker("w1", os.getpid(), ["0", "1"], lease_s=0.5)
    queue.register_worker("ghost", dead_pid(), ["cpu"], lease_s=-1)
    (job,) = queue.submit([TINY])
    queue.claim("w1", os.getpid(), "0", lease_s=0.5)
    before = queue.get(job.id).lease_until
    time.sleep(0.01)
    queue.heartbeat("w1", lease_s=60)
    assert queue.get(job.id).lease_until > before + 30
    assert [w.id for w in queue.workers() if w.alive] == ["w1"]
    assert [w.id for w in queue.request_stop(now=True)] == ["w1"]
    assert queue.worker_stop("w1") == 2
    queue.requeue_orphans()  # drops the dead worker's row
    assert [w.id for w in queue.workers()] == ["w1"]


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # exited but not reaped: a zombie, which kill(pid, 0) still finds
    assert not pid_alive(proc.pid)
    proc.wait()
    assert pid_alive(os.getpid())


@pytest.mark.parametrize(("text", "expected"), [("12", 12), ("#3", 3), (" 7 ", 7)])
def test_job_ids(text: str, expected: int) -> None:
    assert parse_job_id(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1", "0", "1.5", "../1", ""])
def test_bad_job_ids(text: str) -> None:
    with pytest.raises(ConfigError, match="not a job id"):
        parse_job_id(text)


def test_gpu_slots() -> None:
    assert parse_gpus("all", 0) == [Slot("cpu", "")]
    assert parse_gpus("cpu", 4) == [Slot("cpu", "")]
    assert parse_gpus("all", 2) == [Slot("0", "0"), Slot("1", "1")]
    assert parse_gpus("1,0", 2) == [Slot("1", "1"), Slot("0", "0")]
    # the worker itself sees physical GPUs 4 and 6 as cuda:0 and cuda:1
    assert parse_gpus("all", 2, "4,6") == [Slot("0", "4"), Slot("1", "6")]
    for bad, message in [("2", "no GPU 2"), ("0,0", "distinct"), ("x", "expected all")]:
        with pytest.raises(ConfigError, match=message):
            parse_gpus(bad, 2)


def test_submitting_never_imports_torch() -> None:
    """`lab submit` and `lab queue` stay quick: a check and a transaction, no torch."""
    code = ("import sys, lab.queue, lab.queue.actions, lab.cli.jobs, lab.cli.worker, "
            "lab.cli.watch; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# The schema of version 1 as lab wrote it before Slurm jobs (frozen here: the migration must
# take exactly such a file forward).
SCHEMA_V1 = (
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, config TEXT NOT NULL, label TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done',
            'failed', 'cancelled', 'interrupted')),
        attempts INTEGER NOT NULL DEFAULT 0, gpu TEXT, run_id TEXT, worker TEXT, pid INTEGER,
        child_pid INTEGER, host TEXT, heartbeat REAL, lease_until REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL,
        finished REAL, error TEXT)""",
    "CREATE INDEX jobs_by_state ON jobs (state, priority DESC, id)",
    """CREATE TABLE workers (
        id TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, slots TEXT NOT NULL,
        detached INTEGER NOT NULL DEFAULT 0, log TEXT, started REAL NOT NULL,
        heartbeat REAL NOT NULL, lease_until REAL NOT NULL, stop INTEGER NOT NULL DEFAULT 0)""",
    "PRAGMA user_version = 1",
)


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "lab.db"
    old = sqlite3.connect(path)
    for statement in SCHEMA_V1:
        old.execute(statement)
    config = json.dumps(TINY.to_dict())
    old.execute("INSERT INTO jobs (config, label, priority, state, created, run_id, error) "
                "VALUES (?, 'L3', 2, 'failed', 1.0, 'run-a', 'boom')", (config,))
    old.execute("INSERT INTO jobs (config, label, created) VALUES (?, 'L3', 2.0)", (config,))
    old.commit()
    old.close()
    with JobQueue(path) as queue:
        failed, waiting = queue.jobs(("failed",)) + queue.jobs(("queued",))
        assert (failed.id, failed.priority, failed.run_id, failed.error) == (1, 2, "run-a", "boom")
        assert (failed.backend, failed.slurm_id, failed.slurm_options) == ("local", None, None)
        assert waiting.run_config() == TINY
        assert queue.claim("w", os.getpid(), "cpu", 60).id == waiting.id  # still a local job
        assert (failed.study, waiting.study) == (None, None)  # from before studies
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
    assert {"backend", "slurm_id", "slurm_options", "study"} <= columns
    with pytest.raises(sqlite3.IntegrityError):  # only the two backends there are
        db.execute("UPDATE jobs SET backend = 'pbs' WHERE id = 1")
    db.close()
    with JobQueue(path) as again:  # opening a migrated file changes nothing
        assert [j.id for j in again.jobs()] == [1, 2]


def test_local_workers_never_touch_slurm_jobs(queue: JobQueue) -> None:
    (slurm_job,) = queue.submit([TINY], backend="slurm", slurm_options={"gpus": 0})
    assert slurm_job.backend == "slurm" and slurm_job.slurm_options == {"gpus": 0}
    assert not queue.has_claimable()
    assert queue.claim("w", os.getpid(), "cpu", 60) is None
    assert queue.claim("w", os.getpid(), "cpu", 60, job_id=slurm_job.id) is None
    # its own Slurm job claims it; no heartbeat keeps its lease, and its process is gone
    mine = queue.claim("slurm:7", dead_pid(), "cpu", lease_s=-1, job_id=slurm_job.id,
                       backend="slurm")
    assert mine is not None and mine.worker == "slurm:7"
    assert queue.requeue_orphans() == [] and not queue.awaiting_requeue()
    assert queue.get(slurm_job.id).state == "running"  # left to lab.slurm.reconcile
    (local,) = queue.submit([TINY])
    assert queue.claim("w", os.getpid(), "cpu", 60).id == local.id


def test_a_job_is_claimed_only_when_its_gpus_are_free(queue: JobQueue) -> None:
    (wide,) = queue.submit([TINY.replace(device="auto", nproc=2, batch_size=64)], priority=9)
    (narrow,) = queue.submit([TINY.replace(device="auto")])
    (cpu,) = queue.submit([TINY.replace(device="cpu", nproc=4, batch_size=64)])
    assert (wide.slots, narrow.slots, cpu.slots) == (2, 1, 1)
    # one GPU free: the two-GPU job waits, the best job that fits goes
    assert queue.claim("w", os.getpid(), "0", 60, max_slots=1).id == narrow.id
    assert queue.claim("w", os.getpid(), "1", 60, max_slots=1).id == cpu.id
    assert queue.claim("w", os.getpid(), "2", 60, max_slots=1) is None
    claimed = queue.claim("w", os.getpid(), "2,3,4", 60, max_slots=3)
    assert (claimed.id, claimed.gpu) == (wide.id, "2,3")  # recorded on the slots it takes

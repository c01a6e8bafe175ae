"""The queue's SQLite file, `runs/lab.db`: connection settings, schema, write transactions.

WAL mode lets readers (`lab queue --watch`, the TUI) read while a writer writes; a busy timeout
makes a contended writer wait its turn instead of failing; `synchronous = FULL` keeps an
acknowledged submit through a power cut. Every write is a short `BEGIN IMMEDIATE` transaction:
it takes the write lock at its first statement, so a read-then-update (a claim) is atomic. The
schema carries a version (`PRAGMA user_version`); a file from a newer lab is refused.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from lab.errors import BusyError, ConfigError, DataError, LabError, StorageError
from lab.runs import schema

_Q = TypeVar("_Q", bound="QueueDB")

DB_NAME = "lab.db"
SCHEMA_VERSION = 2
JOB_STATES = tuple(s.value for s in schema.JOB_STATES)  # spelled out in the CHECK constraint
BUSY_TIMEOUT_S = 30.0

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        config TEXT NOT NULL,
        label TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN {JOB_STATES!r}),
        attempts INTEGER NOT NULL DEFAULT 0,
        gpu TEXT,
        run_id TEXT,
        worker TEXT,
        pid INTEGER,
        child_pid INTEGER,
        host TEXT,
        heartbeat REAL,
        lease_until REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        error TEXT)""",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, priority DESC, id)",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        slots TEXT NOT NULL,
        detached INTEGER NOT NULL DEFAULT 0,
        log TEXT,
        started REAL NOT NULL,
        heartbeat REAL NOT NULL,
        lease_until REAL NOT NULL,
        stop INTEGER NOT NULL DEFAULT 0)""",
    "PRAGMA user_version = 1",
)
# Each entry takes the schema from its index + 1 to the next version, in the same transaction
# as the version bump; a new file runs them all after `_SCHEMA`.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1 -> 2: Slurm jobs (lab.queue.slurm); local workers claim only backend 'local'
        "ALTER TABLE jobs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local' "
        "CHECK (backend IN ('local', 'slurm'))",
        "ALTER TABLE jobs ADD COLUMN slurm_id TEXT",
        "ALTER TABLE jobs ADD COLUMN slurm_options TEXT",
    ),
)


def busy_timeout_s() -> float:
    """How long a writer waits for the lock: LAB_DB_TIMEOUT seconds, else BUSY_TIMEOUT_S."""
    raw = os.environ.get("LAB_DB_TIMEOUT", "")
    try:
        value = float(raw) if raw else BUSY_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"LAB_DB_TIMEOUT={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"LAB_DB_TIMEOUT={raw!r} must be between 0 and 3600 seconds")
    return value


def _environmental(exc: sqlite3.Error) -> bool:
    """Errors of the machine (a lock, a read-only or full disk), not of the file's contents."""
    text = str(exc)
    return any(k in text for k in ("locked", "busy", "readonly", "read-only", "disk is full",
                                   "unable to open", "disk I/O error"))


class QueueDB:
    """One connection to `runs/lab.db`, set up; `JobQueue` adds what is done with it.
    Open one per process (connections are not shared)."""

    def __init__(self, path: Path, busy_timeout: float | None = None) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout = busy_timeout_s() if busy_timeout is None \
            else busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.OperationalError as exc:  # e.g. a read-only runs directory
            raise StorageError(f"cannot open the queue database {self.path}: {exc}") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._enable_wal(busy_timeout)
            self._db.execute("PRAGMA synchronous = FULL")  # a submitted job survives power loss
            self._migrate()
        except BaseException as exc:
            self._db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if _environmental(exc):
                raise self._translate(exc) from None
            raise DataError(f"{self.path} is not a usable lab queue database ({exc})",
                            hint="move it aside; the runs themselves are not in it") from None

    @classmethod
    def open(cls: type[_Q], runs_dir: Path, create: bool = True) -> _Q | None:
        """The runs directory's queue; None when it has none and `create` is False (readers
        such as `lab queue` never create files)."""
        path = Path(runs_dir) / DB_NAME
        if not create and not path.exists():
            return None
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------
    def _enable_wal(self, busy_timeout: float) -> None:
        # Switching a new file to WAL needs a moment alone with it; many processes creating the
        # database at once can see "locked" here even with a busy timeout, so retry.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataError(f"{self.path} was written by a newer lab (schema {version})")
        if version == SCHEMA_VERSION:
            return
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # under the lock now
            if version == 0:
                for statement in _SCHEMA:
                    db.execute(statement)
                version = 1
            for to_version in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[to_version - 2]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {to_version}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement; a lock held
        past the busy timeout, or a file that cannot be written, is one clear error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _environmental(exc):
                raise self._translate(exc) from None
            raise

    def _translate(self, exc: sqlite3.Error) -> LabError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return BusyError(f"the queue database {self.path} is locked by another process "
                             f"(waited {self.busy_timeout:g} s)",
                             hint="try again; LAB_DB_TIMEOUT sets the wait in seconds")
        return StorageError(f"cannot write the queue database {self.path}: {text}")

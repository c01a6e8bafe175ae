"""The queue's SQLite file, `runs/lab.db`: connection settings, schema, write transactions.

WAL mode lets readers (`lab queue --watch`, the TUI) read while a writer writes; a busy timeout
makes a contended writer wait its turn instead of failing; `synchronous = FULL` keeps an
acknowledged submit through a power cut. Every write is a short `BEGIN IMMEDIATE` transaction:
it takes the write lock at its first statement, so a read-then-update (a claim) is atomic. The
schema carries a version (`PRAGMA user_version`); a file from a newer lab is refused.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from lab.errors import DataError

_Q = TypeVar("_Q", bound="QueueDB")

DB_NAME = "lab.db"
SCHEMA_VERSION = 1
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
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
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


class QueueDB:
    """One connection to `runs/lab.db`, set up; `JobQueue` adds what is done with it.
    Open one per process (connections are not shared)."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
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
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA:
                    db.execute(statement)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

"""The queue's SQLite file, `runs/lab.db`: connection settings, schema, write transactions.

WAL mode lets readers (`lab queue --watch`, the TUI) read while a writer writes; a busy timeout
makes a contended writer wait its turn instead of failing; `synchronous = FULL` keeps an
acknowledged submit through a power cut. Every write is a short `BEGIN IMMEDIATE` transaction:
it takes the write lock at its first statement, so a read-then-update (a claim) is atomic.

A file is recognised before anything is written to it (`identify`, read-only): lab's files carry
an application id (`PRAGMA application_id`, set when one is created or first opened by a writer)
and a schema version (`PRAGMA user_version`), and their tables have known columns. Another
application's SQLite file, a file from a newer lab, or a `jobs` table of another shape is refused
as it was found, byte for byte (no WAL switch, no tables added); only our own older versions are
migrated, and only by a command that writes jobs. Readers (`readonly`) never write at all.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from lab.errors import BusyError, ConfigError, DataError, LabError, StorageError
from lab.runs import schema, writable_dir

_Q = TypeVar("_Q", bound="QueueDB")

DB_NAME = "lab.db"
SCHEMA_VERSION = 3
APPLICATION_ID = 0x4C616251  # "LabQ" in the file's header: this SQLite file is lab's queue
_MAGIC = b"SQLite format 3\x00"
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
    (  # 2 -> 3: studies (lab.queue.studies); a job's study is its config's, NULL for none
        "ALTER TABLE jobs ADD COLUMN study TEXT",
        "UPDATE jobs SET study = nullif(json_extract(config, '$.study'), '') "
        "WHERE json_valid(config)",
        "CREATE INDEX IF NOT EXISTS jobs_by_study ON jobs (study, id)",
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


@functools.cache
def expected_columns(version: int) -> dict[str, frozenset[str]]:
    """The columns of each of lab's tables at schema `version`, as its own statements make
    them (run on an in-memory database, so a new migration needs no second list here)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        for to_version in range(2, version + 1):
            for statement in _MIGRATIONS[to_version - 2]:
                db.execute(statement)
        return {table: frozenset(r[1] for r in db.execute(f"PRAGMA table_info({table})"))
                for table in _tables(db)}
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                     "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def _unusable(path: Path, why: str) -> DataError:
    return DataError(f"{path} is not a usable lab queue database: {why}",
                     hint="move it aside; the runs themselves are not in it")


def _check_marks(path: Path, application_id: int, version: int) -> None:
    if application_id not in (0, APPLICATION_ID):
        raise _unusable(path, f"it belongs to another application "
                              f"(application_id {application_id:#x})")
    if version > SCHEMA_VERSION:
        raise _unusable(path, f"it was written by a newer lab (schema {version}; this lab "
                              f"reads up to {SCHEMA_VERSION})")
    if version < 0:
        raise _unusable(path, f"its schema version is {version}")


def _ro_uri(path: Path, immutable: bool) -> str:
    mode = "immutable=1" if immutable else "mode=ro"
    return f"file:{urllib.parse.quote(str(path.resolve()))}?{mode}"


def identify(path: Path, busy_timeout: float = BUSY_TIMEOUT_S) -> int:
    """The schema version of lab's queue file at `path`, found without writing anything: 0
    when there is none yet (no file, an empty one, or SQLite holding nothing), else 1 to
    SCHEMA_VERSION. Anything else is refused (DataError): not SQLite, another application's
    file (its application id, or tables lab did not create), a newer lab's, or a table of
    another shape. The 100-byte header is read first, so a foreign or newer file is told
    apart without opening it in SQLite at all; then a read-only connection checks the rest
    (`immutable`, which creates no -wal or -shm file, unless one is there already)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StorageError(f"cannot read the queue database {path}: {exc.strerror}") from None
    if not header:
        return 0
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise _unusable(path, "it is not an SQLite file")
    _check_marks(path, int.from_bytes(header[68:72], "big", signed=True),
                 int.from_bytes(header[60:64], "big", signed=True))
    in_use = Path(f"{path}-wal").exists()  # then -shm may be made too: it is in use anyway
    for immutable in ((False,) if in_use else (True, False)):
        try:
            return _identify_open(path, busy_timeout, immutable)
        except sqlite3.DatabaseError as exc:
            if _environmental(exc):
                raise _translate(path, busy_timeout, exc) from None
            if not immutable:
                raise _unusable(path, str(exc)) from None
            # an unlocked read can meet a checkpoint moving pages: look again, with locks
    raise AssertionError("unreachable: the last attempt returns or raises")


def _identify_open(path: Path, busy_timeout: float, immutable: bool) -> int:
    db = sqlite3.connect(_ro_uri(path, immutable), uri=True, timeout=busy_timeout,
                         isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        _check_marks(path, application_id, version)
        tables = _tables(db)
        if not tables and version == 0:
            return 0
        if version == 0:
            raise _unusable(path, f"it holds tables lab did not create ({', '.join(tables[:5])})")
        expected = expected_columns(version)
        foreign = sorted(set(tables) - set(expected))
        if foreign:
            raise _unusable(path, f"it holds tables lab did not create ({', '.join(foreign[:5])})")
        for table, columns in expected.items():
            found = frozenset(r[1] for r in db.execute(f"PRAGMA table_info({table})"))
            if found != columns:
                missing = ", ".join(sorted(columns - found)[:5]) or "none"
                extra = ", ".join(sorted(found - columns)[:5]) or "none"
                raise _unusable(path, f"its {table} table has another shape than lab's schema "
                                      f"{version} (missing: {missing}; unexpected: {extra})")
        return version
    finally:
        db.close()


def _translate(path: Path, busy_timeout: float, exc: sqlite3.Error) -> LabError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return BusyError(f"the queue database {path} is locked by another process "
                         f"(waited {busy_timeout:g} s)",
                         hint="try again; LAB_DB_TIMEOUT sets the wait in seconds")
    return StorageError(f"cannot write the queue database {path}: {text}")


class QueueDB:
    """One connection to `runs/lab.db`, set up; `JobQueue` adds what is done with it.
    Open one per process (connections are not shared). The file is recognised first
    (`identify`); `readonly` opens it read-only and never migrates."""

    def __init__(self, path: Path, busy_timeout: float | None = None,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.busy_timeout = busy_timeout = busy_timeout_s() if busy_timeout is None \
            else busy_timeout
        if not readonly:  # a read-only or misnamed runs directory: one line that says so
            writable_dir(self.path.parent)
        version = identify(self.path, busy_timeout)  # raises before anything is written
        if readonly and version == 0:
            raise _unusable(self.path, "it holds no queue yet")
        try:
            if readonly:
                self._db = sqlite3.connect(_ro_uri(self.path, immutable=False), uri=True,
                                           timeout=busy_timeout, isolation_level=None)
            else:
                self._db = sqlite3.connect(self.path, timeout=busy_timeout,
                                           isolation_level=None)
        except sqlite3.OperationalError as exc:  # e.g. a read-only runs directory
            raise StorageError(f"cannot open the queue database {self.path}: {exc}") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not readonly:
                self._enable_wal(busy_timeout)
                self._db.execute("PRAGMA synchronous = FULL")  # a submitted job survives power loss
                self._migrate()
        except BaseException as exc:
            self._db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if _environmental(exc):
                raise self._translate(exc) from None
            raise _unusable(self.path, str(exc)) from None

    @classmethod
    def open(cls: type[_Q], runs_dir: Path, create: bool = True,
             readonly: bool = False) -> _Q | None:
        """The runs directory's queue; None when it has none and `create` is False (readers
        such as `lab queue` never create files). `readonly`: a read-only connection, for
        commands that only look (`lab queue`, `lab worker status`, `lab logs`)."""
        path = Path(runs_dir) / DB_NAME
        if not create and (not path.exists() or identify(path) == 0):
            return None
        return cls(path, readonly=readonly)

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
        """Create the schema in a new file, take our own older file forward, and mark it as
        lab's (application id), in one write transaction; nothing for a current file."""
        def marks(db: sqlite3.Connection) -> tuple[int, int]:
            return (db.execute("PRAGMA application_id").fetchone()[0],
                    db.execute("PRAGMA user_version").fetchone()[0])

        application_id, version = marks(self._db)
        _check_marks(self.path, application_id, version)
        if version == SCHEMA_VERSION and application_id == APPLICATION_ID:
            return
        with self._write() as db:
            application_id, version = marks(db)  # under the lock now
            _check_marks(self.path, application_id, version)
            if version == 0:
                if _tables(db):  # someone else's, made since `identify` looked
                    raise _unusable(self.path, "it holds tables lab did not create")
                for statement in _SCHEMA:
                    db.execute(statement)
                version = 1
            for to_version in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[to_version - 2]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {to_version}")
            if application_id != APPLICATION_ID:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

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
        return _translate(self.path, self.busy_timeout, exc)

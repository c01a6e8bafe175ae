"""The queue's file is recognised before it is changed (issue 13, class 5).

A `runs/lab.db` that lab cannot use (a newer lab's, another application's SQLite file, a
`jobs` table of another shape) is refused with exit 4 by every command, exactly as it was
found: same bytes, same modification time, no -wal or -shm file beside it. Our own older file
is migrated only by a command that writes jobs; commands that only look never write.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.config import RunConfig
from lab.queue import JobQueue
from lab.queue import db as queue_db
from lab.queue.db import APPLICATION_ID, SCHEMA_VERSION, expected_columns, identify
from tests.cli_inprocess import one_click_command, run_cli
from tests.test_queue import SCHEMA_V1

DATA = 4
TINY = RunConfig(level=3, model="cnn", weights="none", dataset="digits", image_size=16, epochs=1)
CONFIG = json.dumps(TINY.to_dict())


def lab_tables(version: int) -> list[str]:
    """The statements that make lab's tables at `version` (no user_version, no id)."""
    statements = [s for s in queue_db._SCHEMA if not s.startswith("PRAGMA")]
    for to_version in range(2, version + 1):
        statements += list(queue_db._MIGRATIONS[to_version - 2])
    return statements


def make(path: Path, statements: list[str], wal: bool = False) -> None:
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode = WAL")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    assert not Path(f"{path}-wal").exists()  # closed cleanly: nothing beside it


# Each: what the file is, how to make it, a phrase of the one-line error.
UNUSABLE: list[tuple[str, Callable[[Path], None], str]] = [
    ("a newer lab's (user_version 99)",
     lambda p: make(p, [*lab_tables(SCHEMA_VERSION), "PRAGMA user_version = 99"]), "newer lab"),
    ("a newer lab's, WAL, marked as lab's",
     lambda p: make(p, [*lab_tables(SCHEMA_VERSION), f"PRAGMA application_id = {APPLICATION_ID}",
                        f"PRAGMA user_version = {SCHEMA_VERSION + 1}"], wal=True), "newer lab"),
    ("another application's tables",
     lambda p: make(p, ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
                        "INSERT INTO notes (body) VALUES ('keep me')"]), "did not create"),
    ("another application's tables, WAL",
     lambda p: make(p, ["CREATE TABLE notes (body TEXT)"], wal=True), "did not create"),
    ("another application's id",
     lambda p: make(p, ["PRAGMA application_id = 1234", "CREATE TABLE t (x)"]),
     "another application"),
    ("another application's id on lab's tables",
     lambda p: make(p, [*lab_tables(2), "PRAGMA application_id = 1179402567",
                        "PRAGMA user_version = 2"]), "another application"),
    ("a jobs table of another shape",
     lambda p: make(p, ["CREATE TABLE jobs (id INTEGER PRIMARY KEY, what TEXT)",
                        "CREATE TABLE workers (id TEXT)", "PRAGMA user_version = 2"]),
     "another shape"),
    ("a version-1 jobs table under version 2",
     lambda p: make(p, [*lab_tables(1), "PRAGMA user_version = 2"]), "another shape"),
    ("lab's tables and one more",
     lambda p: make(p, [*lab_tables(2), "CREATE TABLE extra (x)", "PRAGMA user_version = 2"]),
     "did not create"),
    ("lab's tables with version 0",
     lambda p: make(p, lab_tables(2)), "did not create"),
    ("no workers table",
     lambda p: make(p, [lab_tables(2)[0], *lab_tables(2)[3:], "PRAGMA user_version = 2"]),
     "another shape"),
    ("not SQLite", lambda p: p.write_bytes(b"this is not sqlite" * 100), "not an SQLite file"),
    ("an SQLite header cut short", lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x10"),
     "not an SQLite file"),
]

COMMANDS = [
    ["queue"], ["queue", "--json", "--all"], ["worker", "status"],
    ["submit", "--level", "3", "--dataset", "digits"], ["cancel", "1"], ["retry", "1"],
    ["logs", "1"], ["watch", "1"], ["worker", "stop"],
]


def fingerprint(runs: Path) -> dict[str, Any]:
    """Every file beside the database: its bytes and its modification time."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(runs.iterdir())}


_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


@pytest.mark.parametrize(("what", "build", "phrase"), UNUSABLE, ids=[u[0] for u in UNUSABLE])
def test_a_file_lab_cannot_use_is_refused_and_left_as_it_was(
        what: str, build: Callable[[Path], None], phrase: str, lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    runs.mkdir()
    build(runs / "lab.db")
    before = fingerprint(runs)
    for argv in COMMANDS:
        code, err = run_cli(argv, capsys)
        lines = err.strip().splitlines()
        assert code == DATA, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("lab: error: "), (argv, err)
        assert phrase in lines[0] and str(runs / "lab.db") in lines[0], (argv, lines[0])
        assert fingerprint(runs) == before, argv
    for create in (True, False):
        with pytest.raises(Exception, match=phrase):
            JobQueue.open(runs, create=create)
    assert fingerprint(runs) == before


def test_the_table_covers_every_way_a_file_can_be_foreign() -> None:
    assert len(UNUSABLE) >= 12 and len(UNUSABLE) * len(COMMANDS) >= 100


def test_expected_columns_are_those_a_new_file_gets(tmp_path: Path) -> None:
    with JobQueue.open(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "lab.db")
    found = {t: frozenset(r[1] for r in db.execute(f"PRAGMA table_info({t})"))
             for t in ("jobs", "workers")}
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert expected_columns(SCHEMA_VERSION) == found
    assert identify(tmp_path / "lab.db") == SCHEMA_VERSION
    assert identify(tmp_path / "nothing.db") == 0


def _version_1(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in SCHEMA_V1:
        db.execute(statement)
    db.execute("INSERT INTO jobs (config, label, created) VALUES (?, 'L3', 2.0)", (CONFIG,))
    db.commit()
    db.close()


def _version_2_unmarked(path: Path) -> None:
    """A file as lab wrote it before application ids: WAL, version 2, id 0."""
    make(path, [*lab_tables(2), "PRAGMA user_version = 2"], wal=True)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO jobs (config, label, created) VALUES (?, 'L3', 2.0)", (CONFIG,))
    db.commit()
    db.close()


def _version_2(path: Path) -> None:
    """A file as lab wrote it before studies: marked, WAL, version 2, no `study` column."""
    make(path, [*lab_tables(2), f"PRAGMA application_id = {APPLICATION_ID}",
                "PRAGMA user_version = 2"], wal=True)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO jobs (config, label, created) VALUES (?, 'L3', 2.0)", (CONFIG,))
    db.commit()
    db.close()


@pytest.mark.parametrize("build", [_version_1, _version_2_unmarked, _version_2],
                         ids=["v1", "v2 unmarked", "v2 before studies"])
def test_our_older_file_is_read_as_is_and_migrated_only_by_a_writer(
        build: Callable[[Path], None], lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    runs.mkdir()
    build(runs / "lab.db")
    before = fingerprint(runs)["lab.db"]
    for argv in (["queue", "--json"], ["worker", "status"], ["logs", "1"]):
        code, err = run_cli(argv, capsys)
        assert code == 0, (argv, err)
        assert fingerprint(runs)["lab.db"] == before, argv  # no migration, no id, no WAL switch
    code, err = run_cli(["submit", "--level", "3", "--dataset", "digits", "-q"], capsys)
    assert code == 0, err
    code, err = run_cli(["submit", "--level", "3", "--dataset", "digits", "-q", "--seeds", "2",
                         "--study", "after"], capsys)
    assert code == 0, err
    with JobQueue.open(runs, create=False) as queue:
        assert [j.id for j in queue.jobs()] == [1, 2, 3, 4]
        assert [j.study for j in queue.jobs()] == [None, None, "after", "after"]
        assert queue.studies() == ["after"]
    db = sqlite3.connect(runs / "lab.db")
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_looking_at_a_current_file_never_writes_it(lab_dirs: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    assert run_cli(["submit", "--level", "3", "--dataset", "digits", "-q"], capsys)[0] == 0
    before = fingerprint(runs)["lab.db"]
    for argv in (["queue"], ["queue", "--json", "--all"], ["worker", "status"], ["logs", "1"]):
        assert run_cli(argv, capsys)[0] == 0, argv
        assert fingerprint(runs)["lab.db"] == before, argv


@pytest.mark.parametrize("content", [b"", None], ids=["empty file", "no file"])
def test_readers_leave_an_empty_or_missing_file_alone(
        content: bytes | None, lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    runs.mkdir()
    if content is not None:
        (runs / "lab.db").write_bytes(content)
    before = fingerprint(runs)
    for argv in (["queue"], ["worker", "status"], ["worker", "stop"]):
        assert run_cli(argv, capsys)[0] == 0, argv
        assert fingerprint(runs) == before
    assert JobQueue.open(runs, create=False) is None

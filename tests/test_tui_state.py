"""The console's state file: sections kept apart, and no bad file or bad disk breaks the console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.state import load_section, load_state, save_section, state_path


def test_path_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_STATE_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert state_path() == tmp_path / "cfg" / "lab" / "console.json"
    monkeypatch.setenv("LAB_STATE_FILE", str(tmp_path / "s.json"))
    assert state_path() == tmp_path / "s.json"


def test_sections_are_independent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "console.json"
    assert save_section("sort", {"key": "acc"}, path)
    assert save_section("theme", {"name": "light"}, path)
    assert save_section("sort", {"key": "time"}, path)
    assert load_section("sort", path) == {"key": "time"}
    assert load_section("theme", path) == {"name": "light"}
    assert load_section("absent", path) == {}


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"version": 99, "sections": {"a": {}}}',
    b'{"version": 1, "sections": []}', b'{"version": 1}',
    b'{"version": 1, "sections": {"sort": 3}}',
])
def test_bad_files_read_as_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "console.json"
    path.write_bytes(content)
    assert load_section("sort", path) == {}
    assert save_section("sort", {"key": "acc"}, path)
    assert load_section("sort", path) == {"key": "acc"}


def test_unwritable_place_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert save_section("sort", {"key": "acc"}, blocker / "console.json") is False
    assert save_section("sort", {"bad": object()}, tmp_path / "c.json") is False
    assert load_state(tmp_path / "c.json") == {}


def test_written_file_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "console.json"
    save_section("marks", {"runs": ["a", "b"]}, path)
    expected = {"version": 1, "sections": {"marks": {"runs": ["a", "b"]}}}
    assert json.loads(path.read_text()) == expected

"""Provenance facts gathered without failing: the git state of a checkout (a real repository
made here), the environment that changes behaviour, and reading a damaged record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.runs import provenance


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_git_state_names_the_commit_and_whether_tracked_files_changed(repo: Path) -> None:
    state = provenance.git_state(repo)
    assert state == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}
    (repo / "untracked.txt").write_text("not part of the code")
    assert provenance.git_state(repo)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_state(repo)["dirty"] is True


def test_no_checkout_or_no_git_is_null_not_an_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    repo: Path) -> None:
    plain = tmp_path / "installed"
    plain.mkdir()
    assert provenance.git_state(plain) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert provenance.git_state(repo) is None


def test_the_environment_recorded_is_what_changes_behaviour(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", "/somewhere")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("MY_SECRET_TOKEN", "do-not-record")
    env = provenance.relevant_env()
    assert env["LAB_RUNS_DIR"] == "/somewhere" and env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["OMP_NUM_THREADS"] == "4" and "MY_SECRET_TOKEN" not in env
    assert "HOME" not in env and "PATH" not in env


def test_the_package_list_matches_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = provenance.installed_packages()
    frozen = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    pip = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(frozen)}
    ours = {k.lower().replace("_", "-"): v for k, v in listed.items()}
    assert {k: ours.get(k) for k in pip} == pip


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]", "\x00\x01"])
def test_a_missing_or_damaged_record_reads_as_none(tmp_path: Path,
                                                   content: str | None) -> None:
    if content is not None:
        (tmp_path / provenance.PROVENANCE_FILE).write_text(content)
    assert provenance.read(tmp_path) is None


def test_the_summary_line_names_code_python_torch_and_machine() -> None:
    record = {"lab": {"version": "0.1.0", "git": {"commit": "0123456789abcdef", "dirty": True}},
              "python": {"version": "3.11.7"}, "torch": "2.14.1+cu130", "cuda": "13.0",
              "cudnn": 91000, "host": "gpu-box", "gpus": [{"name": "H200"}, {"name": "H200"}],
              "driver": "580.1"}
    line = provenance.summary_line(record)
    assert line == ("lab 0.1.0 (git 0123456789, dirty) · Python 3.11.7 · torch 2.14.1+cu130 "
                    "(CUDA 13.0, cuDNN 91000) · on gpu-box with H200 (driver 580.1)")
    assert provenance.short(record)["gpus"] == ["H200", "H200"]

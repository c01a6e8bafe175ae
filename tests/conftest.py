"""Every test gets its own runs and data directories and never touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["LAB_OFFLINE"] = "1"
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def lab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    runs, data, torch_home = tmp_path / "runs", tmp_path / "data", tmp_path / "torch"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    monkeypatch.setenv("LAB_DATA_DIR", str(data))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return {"runs": runs, "data": data, "torch_home": torch_home}

"""Every test gets its own runs and data directories and never touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["LAB_OFFLINE"] = "1"
os.environ.setdefault("NO_COLOR", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on 2 cores: one math thread per worker (and its subprocesses) instead of two
    # each fighting over the same cores. Set before torch is imported anywhere in the worker.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def lab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    runs, data, torch_home = tmp_path / "runs", tmp_path / "data", tmp_path / "torch"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    monkeypatch.setenv("LAB_DATA_DIR", str(data))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    # The console's preferences (tui/state.py) never go to the real ~/.config from a test.
    monkeypatch.setenv("LAB_STATE_FILE", str(tmp_path / "console-state.json"))
    return {"runs": runs, "data": data, "torch_home": torch_home}


# `-n 2 --dist loadfile` hands out whole files, by default the files with the most tests first
# (xdist's loadscope reorder), which left the few-but-long process files (distributed ranks,
# workers, kill -9, the load) for the end, where one process ran them while the other sat idle.
# Longest first instead (seconds on 2 cores, from `--durations`): the short files fill the gaps
# at the end. Only the order changes; a file not named here keeps its place after these.
LONGEST_FIRST = (
    "test_distributed.py",  # ~350 s
    "test_worker.py",  # ~220 s
    "test_slurm_faults.py",  # ~175 s (a real Slurm time limit)
    "test_cli.py",  # ~175 s (the demo, Level 3 to 90%)
    "test_crash.py",  # ~125 s
    "test_jobs_cli.py",
    "test_load.py",
    "test_report.py",
    "test_mirror.py",
    "test_records_shape.py",  # ~135 s before its CLI tree was built once, ~45 s since
    "test_signals_cleanup.py",
    "test_slurm.py",
    "test_tui_worker.py",
    "test_data_import.py",
)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False  # keep the order below (xdist's controller)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole

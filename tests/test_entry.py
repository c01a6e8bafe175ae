"""The `python -m` targets parse their arguments and refuse to run where they cannot, at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.core.stopping import SignalStop
from lab.entry import rank
from lab.errors import ConfigError
from lab.runs import RunDir


@pytest.mark.parametrize("module", ["lab.jobrun", "lab.entry.jobrun"])
def test_the_job_process_needs_its_attempt(module: str, tmp_path: Path) -> None:
    """`lab.jobrun` is the stable name in sbatch scripts and workers; both names are one
    program: without --attempt (a worker's) or --slurm it refuses before touching the queue."""
    proc = subprocess.run([sys.executable, "-m", module, "5", "--runs-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--attempt is required" in proc.stderr
    assert not (tmp_path / "lab.db").exists()


def test_a_rank_outside_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="runs under torchrun"):
        rank._main([str(tmp_path / "run"), "--data-dir", str(tmp_path)])


def test_a_rank_without_a_job_stops_on_signals_only(tmp_path: Path) -> None:
    signals = SignalStop()
    assert rank._stop_check(signals, None, RunDir(tmp_path)) is signals

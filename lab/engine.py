"""The two calls every client makes to train: start a run from a config, resume one.

The CLI's `lab run`, the demo, and the queue workers all go through here, so a run is created,
recorded and finished the same way whoever asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError
from lab.runs import RunDir, new_run
from lab.train import Emit, fit


def preflight(config: RunConfig, data_dir: Path) -> None:
    """Fail before a run directory exists when the data or weights are plainly missing."""
    from lab.data import load_dataset
    from lab.models import build_model
    from lab.train import resolve_device

    resolve_device(config.device)
    data = load_dataset(config.dataset, data_dir)
    build_model(config, len(data.classes))  # raises on missing or unfit weights


def start_run(config: RunConfig, runs_dir: Path, data_dir: Path, emit: Emit | None = None,
              on_created: Callable[[RunDir], None] | None = None,
              check: bool = True, should_stop: Callable[[], bool] | None = None,
              ) -> tuple[RunDir, dict[str, Any]]:
    """Check what can be checked, create the run directory, train it to the end.

    `should_stop` is polled after every batch (a queued job's cancel check); see `fit`."""
    if check:
        preflight(config, data_dir)
    run = new_run(runs_dir, config)
    if on_created is not None:
        on_created(run)
    result = fit(config, run, data_dir, emit or (lambda _e: None), should_stop=should_stop)
    return run, result


def resume_run(run: RunDir, data_dir: Path, emit: Emit | None = None,
               should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Continue an interrupted or failed run from its last checkpoint (or from the start)."""
    state = run.live_state()
    if state == "done":
        raise ConfigError(f"run {run.id} is already done: nothing to resume")
    if state == "running":
        pid = run.status().get("pid")
        raise ConfigError(f"run {run.id} is still running (pid {pid})")
    return fit(run.config(), run, data_dir, emit or (lambda _e: None), resume=True,
               should_stop=should_stop)

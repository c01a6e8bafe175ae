"""The two calls every client makes to train: start a run from a config, resume one.

The CLI's `lab run`, the demo, and the queue workers all go through here, so a run is created,
recorded and finished the same way whoever asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.core import collectives as distributed
from lab.errors import ConfigError
from lab.launch import torchrun
from lab.launch.session import Emit, train_run
from lab.runs import RunDir, State, new_run


def preflight(config: RunConfig, data_dir: Path) -> None:
    """Fail before a run directory exists when the data or weights are plainly missing."""
    from lab.core.device import resolve_device
    from lab.core.models import build_model
    from lab.data import load_dataset

    device = resolve_device(config.device)
    distributed.check_sync_bn(config, device.type)
    data = load_dataset(config.dataset, data_dir)
    build_model(config, len(data.classes))  # raises on missing or unfit weights


def start_run(config: RunConfig, runs_dir: Path, data_dir: Path, emit: Emit | None = None,
              on_created: Callable[[RunDir], None] | None = None,
              check: bool = True, should_stop: Callable[[], bool] | None = None,
              progress: str = "auto", job: int | None = None,
              ) -> tuple[RunDir, dict[str, Any]]:
    """Check what can be checked, create the run directory, train it to the end.

    `should_stop` is polled after every batch (a queued job's cancel check); see
    `lab.core.loop.fit`. A config with `nproc` > 1 starts that many processes under torchrun's
    agent (see `lab.launch.torchrun`; `progress` is how rank 0 prints: auto, plain or quiet,
    and `job` the queued job it answers to). Started by torchrun itself (RANK and WORLD_SIZE
    set), this process is one rank: rank 0 creates the run and tells the others its id."""
    ranked = distributed.from_env()
    if ranked is not None and ranked.active:
        return _start_as_rank(config, runs_dir, data_dir, emit, on_created, check, ranked)
    if check:
        preflight(config, data_dir)
    run = new_run(runs_dir, config)
    if on_created is not None:
        on_created(run)
    if config.nproc > 1:
        return run, torchrun.launch(run, data_dir, config.nproc, resume=False,
                                       quiet=progress == "quiet", plain=progress == "plain",
                                       job=job)
    result = train_run(config, run, data_dir, emit or (lambda _e: None), should_stop=should_stop)
    return run, result


def _start_as_rank(config: RunConfig, runs_dir: Path, data_dir: Path, emit: Emit | None,
                   on_created: Callable[[RunDir], None] | None, check: bool,
                   dist: distributed.Dist) -> tuple[RunDir, dict[str, Any]]:
    distributed.init(dist, config.device)
    config = config.replace(nproc=dist.world)
    run_id = None
    if dist.main:
        if check:
            preflight(config, data_dir)
        run = new_run(runs_dir, config)
        if on_created is not None:
            on_created(run)
        run_id = run.id
    run_id = distributed.gather_objects(dist, run_id)[0]
    run = RunDir(Path(runs_dir) / run_id)
    return run, _fit_as_rank(config, run, data_dir, emit, False, dist)


def _fit_as_rank(config: RunConfig, run: RunDir, data_dir: Path, emit: Emit | None,
                 resume: bool, dist: distributed.Dist) -> dict[str, Any]:
    """One rank of the user's torchrun: signals stop it at an agreed step, as in `launch`."""
    from lab.core.stopping import SignalStop

    with SignalStop(escalate=False, announce=dist.main) as stop:
        try:
            return train_run(config, run, data_dir, emit or (lambda _e: None), resume=resume,
                       should_stop=stop, dist=dist)
        finally:
            distributed.shutdown()


def _not_resumable(run: RunDir) -> str | None:
    state = run.live_state()
    if state == State.DONE:
        return f"run {run.id} is already done: nothing to resume"
    if state == State.RUNNING:
        return f"run {run.id} is still running (pid {run.status().get('pid')})"
    return None


def resume_run(run: RunDir, data_dir: Path, emit: Emit | None = None,
               should_stop: Callable[[], bool] | None = None, progress: str = "auto",
               job: int | None = None) -> dict[str, Any]:
    """Continue an interrupted or failed run from its last checkpoint (or from the start),
    with as many processes as it was started with. Every record is checked first: a corrupt
    one is a DataError before anything is written."""
    run.check_records()
    config = run.config()
    ranked = distributed.from_env()
    if ranked is not None and ranked.active:
        distributed.init(ranked, config.device)
        # rank 0 decides: a rank that looked later could see rank 0 already running it
        problem = distributed.gather_objects(
            ranked, _not_resumable(run) if ranked.main else None)[0]
        if problem:
            raise ConfigError(problem)
        return _fit_as_rank(config.replace(nproc=ranked.world), run, data_dir, emit, True,
                            ranked)
    problem = _not_resumable(run)
    if problem:
        raise ConfigError(problem)
    if config.nproc > 1:
        return torchrun.launch(run, data_dir, config.nproc, resume=True,
                                  quiet=progress == "quiet", plain=progress == "plain", job=job)
    return train_run(config, run, data_dir, emit or (lambda _e: None), resume=True,
               should_stop=should_stop)

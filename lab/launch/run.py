"""The two calls every client makes to train: start a run from a config, resume one.

The CLI's `lab run`, the demo, and the queue workers all go through here, so a run is created,
recorded and finished the same way whoever asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.config import MODEL_SHAPE, RunConfig
from lab.core import collectives as distributed
from lab.errors import ConfigError, DataError, LabError
from lab.launch import torchrun
from lab.launch.session import Emit, train_run
from lab.runs import RunDir, State, checkpoint, new_run


def preflight(config: RunConfig, data_dir: Path) -> None:
    """Fail before a run directory exists on everything that can be checked without training:
    the device, the data set and its split (`checked_split`: no empty part, no batch of one
    where BatchNorm cannot take it), the memory model and batch need for this class count,
    the memory budgets a person set (`LAB_DEVICE_MEMORY`, `LAB_HOST_MEMORY`), and the weights
    (present, and of this model)."""
    from lab.core.device import resolve_device
    from lab.core.models import build_model
    from lab.core.prepare import checked_split
    from lab.data import load_dataset
    from lab.data.placement import check_budgets

    check_budgets()
    device = resolve_device(config.device)
    distributed.check_sync_bn(config, device.type)
    data = load_dataset(config.dataset, data_dir)
    checked_split(config, data)
    config.check_memory(len(data.classes))
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


def _not_resumable(run: RunDir, config: RunConfig, force: bool) -> LabError | None:
    """Why `run` cannot be resumed with `config` (its config.json), or None. Pruned, done,
    still running, too big for the memory limit, a checkpoint that cannot be read or holds another
    model than config.json describes (DataError), or a config.json edited since the
    checkpoint in a field that changes training (unless `force`: then config.json wins, see
    `lab.launch.session`); never a run of fewer epochs than the checkpoint has trained.
    Reads only: nothing is written before this passes."""
    state = run.live_state()
    pruned = run.status().get("pruned")
    if pruned and state != State.RUNNING:
        return ConfigError(f"run {run.id} was pruned ({pruned}): its resume checkpoints are "
                           "gone, only its weights (best.pt, last.pt) are kept",
                           hint="start a new run with its config: lab run --config "
                                f"{run.config_path}")
    if state == State.DONE:
        return ConfigError(f"run {run.id} is already done: nothing to resume")
    if state == State.RUNNING:
        return ConfigError(f"run {run.id} is still running (pid {run.status().get('pid')})")
    try:
        config.check_memory()
        loaded = checkpoint.load_latest(run)
    except LabError as exc:
        return exc
    if loaded is None:
        return None
    saved = loaded.state.get("config")
    diff = config.training_differences(saved) if isinstance(saved, dict) else {}
    shape = {k: v for k, v in diff.items()
             if k in MODEL_SHAPE or (k == "image_size" and config.model == "cnn")}
    if shape:  # its weights cannot fit config.json's model, whatever --force says
        return DataError(f"run {run.id}: {loaded.path.name} holds a different model than "
                         f"config.json ({_shown(shape)})",
                         hint="put the checkpoint's values back in config.json, or start a "
                              "new run")
    if diff and not force:
        shown = _shown(diff)
        return ConfigError(f"run {run.id}: config.json differs from its checkpoint "
                           f"({loaded.path.name}) in {shown}",
                           hint=f"`lab resume {run.id} --force` continues with config.json; or "
                                "put the checkpoint's values back")
    epoch = loaded.state.get("epoch")
    if isinstance(epoch, int) and config.epochs < epoch:
        return ConfigError(f"run {run.id}: epochs={config.epochs} in config.json is below the "
                           f"{epoch} epochs its checkpoint has trained",
                           hint=f"set epochs to at least {epoch} in {run.config_path}")
    return None


def _shown(diff: dict[str, tuple[Any, Any]]) -> str:
    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 24 else text[:21] + "..."

    return ", ".join(f"{k} {short(a)} -> {short(b)}" for k, (a, b) in diff.items())


def resume_run(run: RunDir, data_dir: Path, emit: Emit | None = None,
               should_stop: Callable[[], bool] | None = None, progress: str = "auto",
               job: int | None = None, force: bool = False) -> dict[str, Any]:
    """Continue an interrupted or failed run from its last checkpoint (or from the start),
    with as many processes as it was started with. Every record is checked first: a corrupt
    one is a DataError before anything is written. Its config.json must still say what its
    checkpoint was trained with (fields that do not change training aside); `force` goes on
    with config.json and records the change in status.json (`config_forced`)."""
    run.check_records()
    config = run.config()
    ranked = distributed.from_env()
    if ranked is not None and ranked.active:
        distributed.init(ranked, config.device)
        config = config.replace(nproc=ranked.world)
        # rank 0 decides: a rank that looked later could see rank 0 already running it
        problem = distributed.gather_objects(
            ranked, _not_resumable(run, config, force) if ranked.main else None)[0]
        if problem:
            raise problem
        return _fit_as_rank(config, run, data_dir, emit, True, ranked)
    problem = _not_resumable(run, config, force)
    if problem:
        raise problem
    if config.nproc > 1:
        return torchrun.launch(run, data_dir, config.nproc, resume=True,
                                  quiet=progress == "quiet", plain=progress == "plain", job=job)
    return train_run(config, run, data_dir, emit or (lambda _e: None), resume=True,
               should_stop=should_stop)

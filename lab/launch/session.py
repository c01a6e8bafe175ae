"""One run from its config to `result.json`: set up, train with the run's hooks, test, record.

`train_run` is what `lab run`, `lab resume`, a queued job and every rank of a data-parallel job
call. It owns the run's life cycle (status `running`, then `done`, `failed` or `interrupted`),
the `start` and `resume` events, the test and the result; the loop itself is `lab.core.loop`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab import extras
from lab.config import RunConfig
from lab.core import collectives
from lab.core.collectives import Dist
from lab.core.device import OOM_ERRORS, is_oom, precision_name, resolve_device, resolve_precision
from lab.core.evaluate import evaluate_part
from lab.core.hooks import Hooks, Position
from lab.core.loop import fit
from lab.core.metrics import classification_summary
from lab.core.parts import Parts, build_parts
from lab.core.prepare import Prepared, official_val, prepare_data
from lab.core.stopping import Patience
from lab.errors import LabError, RunFailed
from lab.launch.hooks import (
    BestWeights,
    Checkpointer,
    EventLog,
    Gallery,
    Meter,
    Progress,
    StatusFile,
    recall_best,
    restore,
)
from lab.launch.system import Nvml, SystemSampler
from lab.launch.tensorboard import TensorBoardHook
from lab.runs import (
    RunDir,
    State,
    atomic_write_json,
    checkpoint,
    now_iso,
    process_start,
    provenance,
)
from lab.runs.provenance import PROVENANCE_FILE

Emit = Callable[[dict[str, Any]], None]


def _ignore(_event: dict[str, Any]) -> None:
    return None


def train_run(config: RunConfig, run: RunDir, data_dir: Path, emit: Emit = _ignore,
              resume: bool = False, should_stop: Callable[[], bool] | None = None,
              dist: Dist | None = None) -> dict[str, Any]:
    """Train, validate each epoch, test at the end; record everything in `run`.

    Exceptions propagate after the status says what happened: `interrupted` for a stop or
    Ctrl-C, `failed` with the error for anything else. What goes wrong while a resumed run
    is set up (a corrupt checkpoint, missing data) leaves its records as they were. With
    `dist` (one rank of a data-parallel job) only rank 0 writes; every rank calls this."""
    dist = dist or Dist.single()
    emit = emit if dist.main else _ignore
    t_start = time.perf_counter()
    try:
        setup = _setup(config, run, data_dir, resume, dist)
    except BaseException as exc:
        if not resume and dist.main:  # a new run: its records exist to say what happened
            _record_end(run, exc)
        raise
    try:
        return _train(setup, config, run, emit, should_stop, t_start, dist)
    except BaseException as exc:
        if dist.main:
            _record_end(run, exc)
        raise


def _record_end(run: RunDir, exc: BaseException) -> None:
    """Best effort: when the disk is full the status cannot be written either, and the run
    then reads as interrupted (its process is gone), which `lab resume` handles the same way."""
    if isinstance(exc, KeyboardInterrupt):
        fields = {"state": State.INTERRUPTED, "error": "interrupted"}
    else:
        fields = {"state": State.FAILED, "error": str(exc) if isinstance(exc, LabError)
                  else f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(OSError):
        run.update_status(**fields, finished=now_iso())


@dataclass
class _Setup:
    parts: Parts
    data: Prepared
    position: Position
    resumed: checkpoint.Loaded | None


def _setup(config: RunConfig, run: RunDir, data_dir: Path, resume: bool, dist: Dist) -> _Setup:
    """Everything that can fail on bad input, before anything is written."""
    if dist.active:
        device = torch.device(collectives.init(dist, config.device))
        collectives.check_sync_bn(config, device.type)
    else:
        device = resolve_device(config.device)
    autocast_dtype = resolve_precision(config.precision, device)
    if config.tensorboard:
        extras.require("tensorboard", "--set tensorboard=true")
    resumed = checkpoint.load_latest(run) if resume else None
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)
    data = prepare_data(config, data_dir, device, dist)
    parts = build_parts(config, len(data.data.classes), len(data.train), device, autocast_dtype,
                        dist)
    position = Position()
    if resumed is not None:
        position = restore(parts, resumed, dist)
        recall_best(run, position)
    return _Setup(parts, data, position, resumed)


def _train(s: _Setup, config: RunConfig, run: RunDir, emit: Emit,
           should_stop: Callable[[], bool] | None, t_start: float, dist: Dist) -> dict[str, Any]:
    parts, data, position = s.parts, s.data, s.position
    if dist.main:
        run.update_status(state=State.RUNNING, pid=os.getpid(), pid_start=process_start(),
                          host=platform.node(), started=now_iso(), device=str(parts.device),
                          error=None, **({"world_size": dist.world} if dist.active else {}),
                          **_forced_change(s, config))
    parts.wrap(config, dist)
    meter, gallery = Meter(data.train_images), Gallery(run, config, parts, data, emit)
    main_only = dist.main or None
    sampler = SystemSampler(run, parts.device, config.system_every, Nvml.open(parts.device)) \
        if dist.main and config.system_every > 0 else None
    board = TensorBoardHook(run) if dist.main and config.tensorboard else None
    hooks = Hooks(main_only and EventLog(run), main_only and Progress(emit), meter,
                  main_only and BestWeights(run, parts), Checkpointer(run, parts, config, dist),
                  main_only and StatusFile(run), main_only and gallery, sampler, board)
    _opening_event(s, config, run, hooks, emit, dist)
    early_stop = Patience(config.patience) if config.patience else None
    if sampler is not None:
        sampler.start()
    try:
        with _out_of_memory_hint(config, parts.device, position):
            fit(parts, data, position, config.epochs, hooks, should_stop, dist, early_stop)
            tested = _weights_to_test(config, run, parts, position, emit, dist)
            t_test = time.perf_counter()
            test = evaluate_part(parts, data, "test", dist, want_predictions=True)
            eval_seconds = time.perf_counter() - t_test
    except BaseException:
        if board is not None:
            board.close()
        raise
    finally:
        if sampler is not None:
            sampler.stop()
    hooks.on_event({"event": "test", "epoch": position.epoch, "step": position.step,
                    "test_loss": test["loss"], "test_acc": test["acc"]}, sync=True)
    stopped = early_stop(position) if early_stop and position.epoch < config.epochs else None
    result = _result(config, run, data, parts, test, position, dist, tested, stopped, timings={
        "train_seconds": round(meter.seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "total_seconds": round(time.perf_counter() - t_start, 3)},
        throughput={"train_images_per_s": meter.images_per_s,
                    "eval_images_per_s": round(len(data.test_labels) / max(eval_seconds, 1e-9),
                                               1)})
    if sampler is not None:
        result["system"] = sampler.summary()
    if not dist.main:
        return result
    atomic_write_json(run.result_path, result)
    hooks.on_test(test)  # the gallery
    if board is not None:
        board.finish()
    run.update_status(state=State.DONE, epoch=position.epoch, step=position.step,
                      finished=now_iso(), gradcam_error=gallery.error)
    if config.prune:
        from lab.runs.prune import prune_files

        emit({"event": "pruned", "run": run.id, "freed_bytes": prune_files(run)})
    emit({"event": "done", "result": result})
    return result


def _weights_to_test(config: RunConfig, run: RunDir, parts: Parts, position: Position,
                     emit: Emit, dist: Dist) -> dict[str, Any]:
    """Put the weights `test_on` asks for into the model; what was tested, for the result.

    `best` reads best.pt on every rank once rank 0 has written it. A best.pt that is missing
    or not of the best epoch (a run resumed from before lab kept one) leaves the last weights,
    said in a warning and in the result (`asked`, `why`), never silently."""
    last = {"weights": "last", "epoch": position.epoch}
    if config.test_on != "best":
        return last
    if position.best_epoch == position.epoch:  # the last epoch is the best: already loaded
        return {"weights": "best", "epoch": position.epoch}
    collectives.gather_objects(dist, None)  # rank 0 has written best.pt
    path = checkpoint.best_path(run)
    try:
        state = checkpoint.read_best(path)
        why = None if state["epoch"] == position.best_epoch else \
            f"best.pt holds epoch {state['epoch']}, not the best epoch {position.best_epoch}"
    except LabError as exc:
        why = str(exc)
    if why is not None:
        emit({"event": "warning", "message": f"testing the last weights: {why}"})
        return {**last, "asked": "best", "why": why}
    checkpoint.load_model_state(parts.model, state["model"], path)
    return {"weights": "best", "epoch": position.best_epoch}


def _forced_change(s: _Setup, config: RunConfig) -> dict[str, Any]:
    """`config_forced` for status.json when a resume went on with a config.json that differs
    from its checkpoint's config (`lab resume --force`: config.json wins): each field's
    value in the checkpoint and the value used from here on."""
    saved = s.resumed.state.get("config") if s.resumed is not None else None
    diff = config.training_differences(saved) if isinstance(saved, dict) else {}
    if not diff:
        return {}
    return {"config_forced": {name: {"checkpoint": old, "config": new}
                              for name, (old, new) in diff.items()}}


def _opening_event(s: _Setup, config: RunConfig, run: RunDir, hooks: Hooks, emit: Emit,
                   dist: Dist) -> None:
    """`resume` (and a cut of the events the checkpoint does not cover), or `start`."""
    position = s.position
    if s.resumed is not None:
        if dist.main:
            run.keep_events_through(position.epoch, position.step if position.mid_epoch else None)
        event = {"event": "resume", "epoch": position.epoch, "step": position.step,
                 "time": now_iso()}
        if position.mid_epoch:
            event["batch"] = position.batch
        if s.resumed.skipped:
            event["fallback"] = s.resumed.skipped
            emit({"event": "warning", "message": f"{s.resumed.skipped}; resuming from "
                  f"{s.resumed.path.name} (epoch {position.epoch})"})
        if dist.main:  # who resumed it, and where (another machine may have taken it over)
            event["provenance"] = provenance.short(provenance.gather(s.parts.device))
        hooks.on_event(event, sync=True)
        return
    if run.metrics_path.exists() and dist.main:
        run.keep_events_through(-1)  # resumed with no checkpoint: start over, start included
    if dist.main:
        atomic_write_json(run.path / PROVENANCE_FILE, provenance.gather(s.parts.device))
    hooks.on_event({
        "event": "start", "epoch": 0, "step": 0, "time": now_iso(), "device": str(s.parts.device),
        "precision": precision_name(s.parts.autocast_dtype), "epochs": config.epochs,
        "steps_per_epoch": len(s.data.train), "classes": s.data.data.classes,
        "split": split_info(s.data), "notes": s.data.notes, **_mirror(s.data),
        "data_on": s.data.placement.mode, "data_on_reason": s.data.placement.reason}, sync=True)


@contextlib.contextmanager
def _out_of_memory_hint(config: RunConfig, device: torch.device,
                        position: Position) -> Iterator[None]:
    """Out of memory, anywhere in training or testing, as one line with a batch size to try."""
    try:
        yield
    except OOM_ERRORS as exc:
        if isinstance(exc, RuntimeError) and not is_oom(exc):
            raise
        smaller = max(1, config.batch_size // 2)
        raise RunFailed(f"out of memory on {device} at batch size {config.batch_size} "
                        f"(epoch {min(position.epoch + 1, config.epochs)}, step {position.step})",
                        hint=f"try --batch-size {smaller}" if smaller < config.batch_size
                        else "use a smaller --image-size or model") from None


def _result(config: RunConfig, run: RunDir, data: Prepared, parts: Parts, test: dict[str, Any],
            position: Position, dist: Dist, tested: dict[str, Any], stopped: str | None,
            timings: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    classes = data.data.classes
    summary = classification_summary(data.test_labels, test["predictions"], classes)
    return {
        "run_id": run.id, "level": config.level, "model": config.model,
        "dataset": data.data.name, "classes": classes,
        "test_acc": test["acc"], "test_loss": test["loss"], "best_val_acc": position.best_val_acc,
        "best_epoch": position.best_epoch or None, "tested": tested,
        "epochs_trained": position.epoch, "stopped": stopped,
        **{k: summary[k] for k in ("per_class", "macro", "confusion", "most_confused")},
        "epochs": config.epochs, "split": split_info(data), "notes": data.notes,
        "augmentation": data.augmentation, **_mirror(data), "data_on": data.placement.mode,
        "timings": timings,
        "throughput": throughput,
        "device": str(parts.device), "precision": precision_name(parts.autocast_dtype),
        "torch": torch.__version__, "finished": now_iso(),
        **({"world_size": dist.world, "sync_bn": config.sync_bn} if dist.active else {}),
    }


def _mirror(data: Prepared) -> dict[str, Any]:
    """The run's mirror decision as its records hold it: {"mirror": {"ok", "reason", "hflip",
    "tta"}}; nothing when none was made."""
    return {"mirror": data.mirror.record()} if data.mirror is not None else {}


def split_info(data: Prepared) -> dict[str, Any]:
    return {"train": int(len(data.split.train)), "val": int(len(data.split.val)),
            "test": int(len(data.test_labels)),
            "test_source": "official" if data.data.test_x is not None else "split",
            "val_source": "official" if official_val(data.data) else "split",
            "fingerprint": data.split.fingerprint()}

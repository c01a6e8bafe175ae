"""The training and evaluation loop: `fit(config, run) -> result`.

The loop never prints. It appends events to the run's `metrics.jsonl`, checkpoints after every
epoch (and where it stands when asked to stop, mid-epoch included; see `lab.checkpoint`), passes
each event to an `emit` callback for whoever is watching, and returns the result it also saves.
Batch order and augmentation of epoch e depend only on (seed, e, rank), and the checkpoint holds
the RNG states, so a resumed run continues where the interrupted one stopped. One process or
one rank of many (`lab.distributed`): the same loop, with sums reduced and rank 0 writing.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lab import checkpoint
from lab.config import RunConfig
from lab.data.augment import resize_normalize
from lab.data.loader import DeviceLoader
from lab.distributed import Dist, all_sum, any_rank, gather_objects
from lab.errors import ConfigError, DataError, LabError, RunFailed
from lab.metrics import classification_summary
from lab.models import build_model
from lab.prepare import Prepared, prepare_data
from lab.runs import RunDir, atomic_write_json, now_iso

Emit = Callable[[dict[str, Any]], None]


def _ignore(_event: dict[str, Any]) -> None:
    return None


# ---- environment -----------------------------------------------------------------------------
def resolve_device(spec: str) -> torch.device:
    """`auto` picks CUDA when present; asking for a device that is not there is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available",
                              hint="use --device cpu or --device auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r} does not exist: "
                              f"{torch.cuda.device_count()} CUDA device(s) visible")
    if spec == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but it is not available", hint="use --device cpu")
    return torch.device(spec)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


# ---- pieces ----------------------------------------------------------------------------------
def make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True,
                           weight_decay=config.weight_decay)


def make_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per batch; `none` keeps the study's constant learning rate."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    return None


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, autocast_dtype: torch.dtype | None,
             want_predictions: bool = False, tta_flip: bool = False) -> dict[str, Any]:
    """Mean loss and accuracy over a loader; predictions and confidences when asked.

    With `tta_flip` the logits of each image and its mirror are averaged."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    preds, confs = [], []
    for images, labels in loader:
        with _autocast(device, autocast_dtype):
            logits = model(images)
            if tta_flip:
                logits = (logits + model(torch.flip(images, dims=[-1]))) / 2
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").double()
        pred = logits.argmax(1)
        correct += (pred == labels).sum()
        if want_predictions:
            preds.append(pred)
            confs.append(logits.softmax(1).amax(1))
    n = max(1, loader.num_samples)
    out: dict[str, Any] = {"loss": loss_sum.item() / n, "acc": correct.item() / n}
    if want_predictions:
        out["predictions"] = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, np.int64)
        out["confidence"] = torch.cat(confs).cpu().numpy() if confs else np.zeros(0)
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---- checkpoints -----------------------------------------------------------------------------
def load_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, verified (see `lab.checkpoint`)."""
    return checkpoint.read(path)


def _checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                      scaler: Any, epoch: int, step: int, config: RunConfig, best_val_acc: float,
                      partial: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resume needs: `epoch` is the last whole epoch; `partial` the place in the next
    one and its running sums, when the run was stopped mid-epoch."""
    return {
        "epoch": epoch,
        "step": step,
        "partial": partial,
        "best_val_acc": best_val_acc,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


# ---- the loop --------------------------------------------------------------------------------
class Stopped(KeyboardInterrupt):
    """Raised after a stop request was honoured: the step finished and a checkpoint was written."""


def fit(config: RunConfig, run: RunDir, data_dir: Path, emit: Emit = _ignore,
        resume: bool = False, should_stop: Callable[[], bool] | None = None,
        dist: Dist | None = None) -> dict[str, Any]:
    """Train, validate each epoch, test at the end; record everything in `run`.

    `should_stop` is polled after every batch: when it says stop, the loop writes a checkpoint
    of where it is (mid-epoch included) and raises `Stopped`. Exceptions propagate after the
    status says what happened: `interrupted` for a stop or Ctrl-C, `failed` with the error for
    anything else. A resumed run continues from its checkpoint; what goes wrong before it has
    written anything (a corrupt checkpoint, missing data) leaves its records as they were.

    With `dist` (one rank of a data-parallel job, see `lab.distributed`) only rank 0 writes;
    every rank must call this with the same arguments.
    """
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
        fields = {"state": "interrupted", "error": "interrupted"}
    else:
        fields = {"state": "failed", "error": str(exc) if isinstance(exc, LabError)
                  else f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(OSError):
        run.update_status(**fields, finished=now_iso())


@dataclass
class _Setup:
    device: torch.device
    autocast_dtype: torch.dtype | None
    prep: Prepared
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    resumed: checkpoint.Loaded | None


def _setup(config: RunConfig, run: RunDir, data_dir: Path, resume: bool,
           dist: Dist) -> _Setup:
    """Everything that can fail on bad input, before anything is written."""
    if dist.active:
        from lab import distributed

        device = torch.device(distributed.init(dist, config.device))
        distributed.check_sync_bn(config, device.type)
    else:
        device = resolve_device(config.device)
    autocast_dtype = resolve_precision(config.precision, device)
    resumed = checkpoint.load_latest(run) if resume else None
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)
    prep = prepare_data(config, data_dir, device, dist)
    model = build_model(config, len(prep.data.classes))
    if resumed is not None:
        checkpoint.load_model_state(model, resumed.state["model"], resumed.path)
    if dist.rank:  # the same initial weights (DDP copies rank 0's), other dropout draws
        torch.manual_seed(config.seed * 7919 + dist.rank)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and dist.active:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, len(prep.train))
    use_scaler = autocast_dtype == torch.float16 and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    if resumed is not None:
        state = resumed.state
        try:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise DataError(f"{resumed.path} does not fit this run's optimizer ({exc})") from None
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng_cpu, rng_cuda = state["rng_cpu"], state.get("rng_cuda")
        ranks = state.get("rng_ranks") or []
        if dist.active and len(ranks) == dist.world:
            rng_cpu, rng_cuda = ranks[dist.rank]
        if dist.main or len(ranks) == dist.world:
            torch.set_rng_state(rng_cpu)
            if device.type == "cuda" and rng_cuda:
                torch.cuda.set_rng_state_all(rng_cuda)
    return _Setup(device, autocast_dtype, prep, model, optimizer, scheduler, scaler, resumed)


def _train(s: _Setup, config: RunConfig, run: RunDir, emit: Emit,
           should_stop: Callable[[], bool] | None, t_start: float, dist: Dist) -> dict[str, Any]:
    device, autocast_dtype, prep, model = s.device, s.autocast_dtype, s.prep, s.model
    optimizer, scheduler, scaler = s.optimizer, s.scheduler, s.scaler
    classes = prep.data.classes

    def record(event: dict[str, Any], sync: bool = False) -> None:
        if dist.main:
            _record(run, emit, event, sync=sync)

    if dist.main:
        run.update_status(state="running", pid=os.getpid(), host=platform.node(),
                          started=now_iso(), device=str(device), error=None,
                          **({"world_size": dist.world} if dist.active else {}))
    net: nn.Module = model
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index]
                                      if device.type == "cuda" else None)
    net = torch.compile(net) if config.compile else net  # shares model's parameters
    # DDP's forward syncs buffers: evaluation, whose chunks differ in length, uses the module
    eval_net = model if dist.active else net
    steps_per_epoch = len(prep.train)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    start_epoch, step, best_val, partial = 1, 0, 0.0, None
    if s.resumed is not None:
        state = s.resumed.state
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        best_val = float(state.get("best_val_acc", 0.0))
        partial = state.get("partial")
        if dist.main:
            run.keep_events_through(start_epoch - 1, step if partial else None)
        event = {"event": "resume", "epoch": start_epoch - 1, "step": step, "time": now_iso()}
        if partial:
            event["batch"] = int(partial["batch"])
        if s.resumed.skipped:
            event["fallback"] = s.resumed.skipped
            emit({"event": "warning", "message": f"{s.resumed.skipped}; resuming from "
                  f"{s.resumed.path.name} (epoch {start_epoch - 1})"})
        record(event, sync=True)
    elif run.metrics_path.exists() and dist.main:
        run.keep_events_through(-1)  # resumed with no checkpoint: start over, start included

    if start_epoch == 1 and partial is None:
        record({
            "event": "start", "epoch": 0, "step": 0, "time": now_iso(), "device": str(device),
            "precision": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "fp32",
            "epochs": config.epochs, "steps_per_epoch": steps_per_epoch,
            "classes": classes, "split": _split_info(prep), "notes": prep.notes,
        }, sync=True)

    def save(epoch: int, at: dict[str, Any] | None = None) -> None:
        """Rank 0 writes; every rank's RNG state goes in, so each resumes its own stream."""
        rngs = gather_objects(dist, (torch.get_rng_state(), torch.cuda.get_rng_state_all()
                                     if torch.cuda.is_available() else []))
        if dist.main:
            state = _checkpoint_state(model, optimizer, scheduler, scaler, epoch, step, config,
                                      best_val, at)
            if dist.active:
                state["rng_ranks"] = rngs
            checkpoint.save(run, state)

    def stop_now() -> bool:
        return should_stop is not None and any_rank(dist, should_stop())

    train_seconds, train_images, epoch = 0.0, 0, start_epoch
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            t0 = time.perf_counter()
            carry, partial = partial, None
            stats, step, stopped = train_one_epoch(
                net, prep.train, optimizer, scheduler, scaler, loss_fn, autocast_dtype, epoch,
                step, config, record, emit, should_stop, carry, dist)
            seconds = time.perf_counter() - t0 + (float(carry["seconds"]) if carry else 0.0)
            if stopped is not None:
                save(epoch - 1, {**stopped, "seconds": seconds})
                if dist.main:
                    run.update_status(epoch=epoch - 1, step=step)
                raise Stopped
            train_seconds += seconds
            train_images += prep.train_images
            val = _reduced(evaluate(eval_net, prep.val, autocast_dtype), prep.val, dist)
            best_val = max(best_val, val["acc"])
            event = {"event": "epoch", "epoch": epoch, "step": step, **stats,
                     "val_loss": val["loss"], "val_acc": val["acc"], "seconds": round(seconds, 3),
                     "images_per_s": round(prep.train_images / max(seconds, 1e-9), 1),
                     "lr": optimizer.param_groups[0]["lr"]}
            # The event first: a crash between the two leaves an epoch that resume redoes (its
            # event is dropped, then written again), never a checkpointed epoch with no event.
            record(event, sync=True)
            save(epoch)
            if dist.main:
                run.update_status(state="running", epoch=epoch, step=step)
            if stop_now():
                raise Stopped  # asked during the epoch's last batch or its validation

        t_test = time.perf_counter()
        tta = config.tta_flip and prep.data.manifest.get("mirror_safe", True)
        test = _reduced(evaluate(eval_net, prep.test, autocast_dtype, want_predictions=True,
                                 tta_flip=tta), prep.test, dist)
        eval_seconds = time.perf_counter() - t_test
    except _OOM_ERRORS as exc:
        if isinstance(exc, RuntimeError) and not _is_oom(exc):
            raise
        smaller = max(1, config.batch_size // 2)
        raise RunFailed(f"out of memory on {device} at batch size {config.batch_size} "
                        f"(epoch {epoch}, step {step})",
                        hint=f"try --batch-size {smaller}" if smaller < config.batch_size
                        else "use a smaller --image-size or model") from None
    y_true = prep.test_labels
    summary = classification_summary(y_true, test["predictions"], classes)
    record({"event": "test", "epoch": config.epochs, "step": step,
                        "test_loss": test["loss"], "test_acc": test["acc"]}, sync=True)
    result = {
        "run_id": run.id, "level": config.level, "model": config.model,
        "dataset": prep.data.name, "classes": classes,
        "test_acc": test["acc"], "test_loss": test["loss"], "best_val_acc": best_val,
        **{k: summary[k] for k in ("per_class", "macro", "confusion", "most_confused")},
        "epochs": config.epochs, "split": _split_info(prep), "notes": prep.notes,
        "augmentation": prep.augmentation,
        "timings": {"train_seconds": round(train_seconds, 3),
                    "eval_seconds": round(eval_seconds, 3),
                    "total_seconds": round(time.perf_counter() - t_start, 3)},
        "throughput": {
            "train_images_per_s": round(train_images / train_seconds, 1) if train_seconds else None,
            "eval_images_per_s": round(len(y_true) / max(eval_seconds, 1e-9), 1)},
        "device": str(device),
        "precision": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "fp32",
        "torch": torch.__version__, "finished": now_iso(),
        **({"world_size": dist.world, "sync_bn": config.sync_bn} if dist.active else {}),
    }
    if not dist.main:
        return result
    atomic_write_json(run.result_path, result)
    gradcam_error = _end_of_run_gallery(config, run, model, prep, test, emit)
    run.update_status(state="done", epoch=config.epochs, step=step, finished=now_iso(),
                      gradcam_error=gradcam_error)
    emit({"event": "done", "result": result})
    return result


def _end_of_run_gallery(config: RunConfig, run: RunDir, model: nn.Module, prep: Prepared,
                        test: dict[str, Any], emit: Emit) -> str | None:
    """The run's Grad-CAM gallery. Its failure is recorded, never allowed to undo the training:
    `lab gradcam RUN` can redo it from the checkpoint."""
    if config.gradcam <= 0:
        return None
    from lab.gradcam import select_examples, write_gallery
    from lab.models import gradcam_target_layer

    try:
        examples = select_examples(prep.test_labels, test["predictions"], test["confidence"],
                                   len(prep.data.classes), config.gradcam)
        index = np.asarray([e.test_index for e in examples], dtype=np.int64)
        images = torch.from_numpy(prep.test_x[index]).permute(0, 3, 1, 2).contiguous().to(
            prep.test.images.device)
        gallery = write_gallery(run.path / "gradcam", model=model,
                                layer=gradcam_target_layer(model), images_uint8=images,
                                inputs=resize_normalize(images, config.image_size),
                                examples=examples, classes=prep.data.classes)
    except Exception as exc:  # noqa: BLE001 - recorded in status.json and shown by clients
        return f"{type(exc).__name__}: {exc}"
    emit({"event": "gradcam", "name": gallery["name"], "count": len(gallery["items"])})
    return None


def train_one_epoch(model: nn.Module, loader: DeviceLoader, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, loss_fn: nn.Module,
                    autocast_dtype: torch.dtype | None, epoch: int, step: int, config: RunConfig,
                    record: Emit, emit: Emit, should_stop: Callable[[], bool] | None,
                    carry: dict[str, Any] | None = None, dist: Dist | None = None,
                    ) -> tuple[dict[str, float], int, dict[str, Any] | None]:
    """One pass over the training set, or its rest from `carry` (a run stopped mid-epoch).

    Loss and accuracy accumulate on the device and are read back only at logging points, so
    CUDA never waits for the host between steps; the first non-finite loss is noted there too,
    so divergence is reported at the step it happened. Returns the epoch's stats, the step
    count and, when `should_stop` said stop, where the epoch stopped (else None).

    With several processes, sums are reduced over them at logging points and at the end, and
    the stop request is agreed on at logging points (a rank alone must not stop)."""
    dist = dist or Dist.single()
    model.train()
    start = int(carry["batch"]) if carry else 0
    carry = carry if dist.main else None  # its sums are global: counted once, on rank 0
    loader.set_epoch(epoch, start_batch=start)
    device = next(model.parameters()).device
    loss_sum = torch.full((), float(carry["loss_sum"]) if carry else 0.0, device=device,
                          dtype=torch.float64)
    correct = torch.full((), int(carry["correct"]) if carry else 0, device=device,
                         dtype=torch.int64)
    seen = int(carry["seen"]) if carry else 0
    window = torch.zeros((), device=device, dtype=torch.float64)
    window_n = 0
    first_bad = torch.full((), -1, device=device, dtype=torch.int64)
    batches = len(loader)
    for i, (images, labels) in enumerate(loader, start=start + 1):
        with _autocast(device, autocast_dtype):
            logits = model(images)
            loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        step += 1
        n = labels.shape[0]
        seen += n
        detached = loss.detach().double()
        first_bad.masked_fill_((first_bad < 0) & ~torch.isfinite(detached), step)
        loss_sum += detached * n
        window += detached
        window_n += 1
        correct += (logits.detach().argmax(1) == labels).sum()
        logging_point = step % config.log_every == 0 or i == batches
        if logging_point:
            value = all_sum(dist, window)[0].item() / (window_n * dist.world)
            if not math.isfinite(value):
                bads = [b for b in gather_objects(dist, int(first_bad.item())) if b >= 0]
                bad = min(bads) if bads else step
                raise RunFailed(
                    f"training diverged: the loss became {value} in epoch {epoch} at step {bad} "
                    f"(batch {i - (step - bad)} of {batches}); the last checkpoint is untouched",
                    hint="lower the learning rate (--lr) or train in fp32 (--precision fp32)")
            record({"event": "step", "epoch": epoch, "step": step, "loss": round(value, 6),
                    "lr": optimizer.param_groups[0]["lr"]})
            window.zero_()
            window_n = 0
        emit({"event": "batch", "epoch": epoch, "batch": i, "batches": batches, "step": step,
              "images": n})
        if should_stop is not None and i < batches and (logging_point or not dist.active) \
                and any_rank(dist, should_stop()):
            loss_sum, correct, seen = all_sum(dist, loss_sum, correct, seen)
            return {}, step, {"epoch": epoch, "batch": i, "loss_sum": loss_sum.item(),
                              "correct": int(correct.item()), "seen": int(seen)}
    loss_sum, correct, seen = all_sum(dist, loss_sum, correct, seen)
    total = max(int(seen), 1)
    return {"train_loss": loss_sum.item() / total, "train_acc": correct.item() / total}, step, None


_OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, RuntimeError)


def _is_oom(exc: BaseException) -> bool:
    """CUDA's own error, or the CPU allocator's RuntimeError."""
    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in text \
        or "out of memory" in text.lower()


def _reduced(result: dict[str, Any], loader: DeviceLoader, dist: Dist) -> dict[str, Any]:
    """One process's evaluation of its chunk made whole: sums over the processes, and the
    predictions of every chunk in order (chunks are contiguous)."""
    if not dist.active:
        return result
    n = loader.num_samples
    loss, correct, total = all_sum(dist, result["loss"] * n, result["acc"] * n, float(n))
    out = {**result, "loss": loss / total, "acc": round(correct) / total}
    if "predictions" in result:
        parts = gather_objects(dist, (result["predictions"], result["confidence"]))
        out["predictions"] = np.concatenate([p for p, _ in parts])
        out["confidence"] = np.concatenate([c for _, c in parts])
    return out


def _record(run: RunDir, emit: Emit, event: dict[str, Any], sync: bool = False) -> None:
    run.append_event(event, sync=sync)
    emit(event)


def _split_info(prep: Prepared) -> dict[str, Any]:
    return {"train": int(len(prep.split.train)), "val": int(len(prep.split.val)),
            "test": int(len(prep.test_labels)),
            "test_source": "official" if prep.data.test_x is not None else "split",
            "fingerprint": prep.split.fingerprint()}

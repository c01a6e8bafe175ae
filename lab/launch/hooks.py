"""What a run does at the loop's boundaries, one hook each: its event log, its status file,
its checkpoints (and the restore that reads them back), its best weights, progress for a
person, throughput, and the end-of-run Grad-CAM gallery. Each is tested on its own, without
training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lab.config import RunConfig
from lab.core.collectives import Dist, gather_objects
from lab.core.hooks import Hook, Position
from lab.core.parts import Parts
from lab.core.prepare import Prepared
from lab.errors import DataError
from lab.runs import RunDir, State, checkpoint

Emit = Callable[[dict[str, Any]], None]


class EventLog(Hook):
    """`metrics.jsonl`: each recorded event appended as one whole line (rank 0 only)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        self.run.append_event(event, sync=sync)


class StatusFile(Hook):
    """`status.json` follows the last checkpointed position (rank 0 only)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    def on_epoch_end(self, position: Position) -> None:
        self.run.update_status(state=State.RUNNING, epoch=position.epoch, step=position.step)

    def on_stop(self, position: Position) -> None:
        self.run.update_status(epoch=position.epoch, step=position.step)


class Progress(Hook):
    """Events, and a `batch` event per step, for whoever watches (rank 0 only)."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        self.emit(event)

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        self.emit({"event": "batch", "epoch": epoch, "batch": batch, "batches": batches,
                   "step": step, "images": images})


class Meter(Hook):
    """Training seconds and images of the epochs this process ran, for the result."""

    def __init__(self, images_per_epoch: int) -> None:
        self.images_per_epoch, self.seconds, self.images = images_per_epoch, 0.0, 0

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        if event.get("event") == "epoch":
            self.seconds += float(event["seconds"])
            self.images += self.images_per_epoch

    @property
    def images_per_s(self) -> float | None:
        return round(self.images / self.seconds, 1) if self.seconds else None


class Checkpointer(Hook):
    """A verified checkpoint at every epoch end and at every stop (see `lab.runs.checkpoint`).
    Every rank takes part, since each rank's RNG state goes in; rank 0 writes."""

    def __init__(self, run: RunDir, parts: Parts, config: RunConfig, dist: Dist) -> None:
        self.run, self.parts, self.config, self.dist = run, parts, config, dist

    def on_epoch_end(self, position: Position) -> None:
        self.save(position)

    def on_stop(self, position: Position) -> None:
        self.save(position)

    def save(self, position: Position) -> None:
        rngs = gather_objects(self.dist, _rng_states())
        if self.dist.main:
            state = snapshot(self.parts, position, self.config)
            if self.dist.active:
                state["rng_ranks"] = rngs
            checkpoint.save(self.run, state)


class BestWeights(Hook):
    """`best.pt` after each epoch that beats the best validation accuracy so far (rank 0 only).
    Written before that epoch's checkpoint: a crash between the two makes a resume redo the
    epoch, which writes the same weights again; the other order could leave a checkpoint that
    counts an epoch as best whose weights were never saved."""

    def __init__(self, run: RunDir, parts: Parts) -> None:
        self.run, self.parts = run, parts

    def on_epoch_end(self, position: Position) -> None:
        if position.improved:
            checkpoint.save_best(self.run, self.parts.model.state_dict(), epoch=position.epoch,
                                 step=position.step, val_acc=position.best_val_acc)


def recall_best(run: RunDir, position: Position) -> None:
    """Fill in the best epoch of a checkpoint written before lab kept one, from the run's
    epoch events up to the checkpoint's epoch (the earliest of equal accuracies)."""
    if position.best_epoch or not position.epoch:
        return
    epochs = [e for e in run.events() if e.get("event") == "epoch"
              and isinstance(e.get("val_acc"), (int, float)) and 0 < e["epoch"] <= position.epoch]
    if epochs:
        best = max(epochs, key=lambda e: (e["val_acc"], -e["epoch"]))
        position.best_epoch, position.best_val_acc = int(best["epoch"]), float(best["val_acc"])


def _rng_states() -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all()
                                   if torch.cuda.is_available() else [])


def snapshot(parts: Parts, position: Position, config: RunConfig) -> dict[str, Any]:
    """What a resume needs: the position, the whole config, every stateful part, the RNG."""
    rng_cpu, rng_cuda = _rng_states()
    return {
        **position.to_state(),
        "config": config.to_dict(),
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "rng_cpu": rng_cpu,
        "rng_cuda": rng_cuda,
    }


def restore(parts: Parts, loaded: checkpoint.Loaded, dist: Dist) -> Position:
    """Put a checkpoint back into unwrapped parts; the inverse of `snapshot`. A checkpoint
    that does not fit (another model or optimizer) is a DataError, raised before any write."""
    state = loaded.state
    checkpoint.load_model_state(parts.model, state["model"], loaded.path)
    try:
        parts.optimizer.load_state_dict(state["optimizer"])
        if parts.scheduler is not None and state.get("scheduler"):
            parts.scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise DataError(f"{loaded.path} does not fit this run's optimizer ({exc})") from None
    if parts.scaler is not None and state.get("scaler"):
        parts.scaler.load_state_dict(state["scaler"])
    rng_cpu, rng_cuda = state["rng_cpu"], state.get("rng_cuda")
    ranks = state.get("rng_ranks") or []
    if dist.active and len(ranks) == dist.world:
        rng_cpu, rng_cuda = ranks[dist.rank]
    if dist.main or len(ranks) == dist.world:
        torch.set_rng_state(rng_cpu)
        if parts.device.type == "cuda" and rng_cuda:
            torch.cuda.set_rng_state_all(rng_cuda)
    return Position.from_state(state)


class Gallery(Hook):
    """The run's Grad-CAM gallery once the test set is scored. Its failure is kept in `error`
    (and so in status.json), never allowed to undo the training: `lab gradcam RUN` redoes it."""

    def __init__(self, run: RunDir, config: RunConfig, parts: Parts, data: Prepared,
                 emit: Emit) -> None:
        self.run, self.config, self.parts, self.data, self.emit = run, config, parts, data, emit
        self.error: str | None = None

    def on_test(self, test: dict[str, Any]) -> None:
        if self.config.gradcam <= 0:
            return
        from lab.explain.gallery import make_gallery

        try:
            gallery = make_gallery(
                self.run.path / "gradcam", self.parts.model, self.data.test_x,
                self.data.test_labels, test["predictions"], test["confidence"],
                self.data.data.classes, self.config.image_size, n=self.config.gradcam)
        except Exception as exc:  # noqa: BLE001 - recorded in status.json, shown by clients
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.emit({"event": "gradcam", "name": gallery["name"], "count": len(gallery["items"]),
                   "run": self.run.id, "layer": gallery["layer"]})

"""Where the loop stands (`Position`) and what it calls at its boundaries (`Hook`).

The loop only trains and validates. Everything else a run needs (its records and status,
checkpoints, progress for a person, throughput, the end-of-run gallery) is a hook, written and
tested on its own, without training (see `lab.launch.hooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Position:
    """Where training stands: the last whole epoch and the global step, and inside the next
    epoch how many batches are done with their running sums (a run stopped mid-epoch)."""

    epoch: int = 0
    step: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # time already spent in the unfinished epoch
    best_val_acc: float = 0.0
    best_epoch: int = 0  # the epoch of best_val_acc (the earliest of equals); 0: not known

    @property
    def improved(self) -> bool:
        """The epoch just ended set a new best validation accuracy (`best.pt` is due)."""
        return self.best_epoch == self.epoch > 0

    @property
    def mid_epoch(self) -> bool:
        return self.batch > 0

    def next_epoch(self, val_acc: float) -> None:
        self.epoch += 1
        self.batch, self.loss_sum, self.correct, self.seen, self.seconds = 0, 0.0, 0, 0, 0.0
        if val_acc > self.best_val_acc or self.epoch == 1:  # ties keep the earlier epoch
            self.best_val_acc, self.best_epoch = val_acc, self.epoch

    def to_state(self) -> dict[str, Any]:
        """The checkpoint's fields (format version 2: `partial` is None at an epoch boundary)."""
        partial = {"epoch": self.epoch + 1, "batch": self.batch, "loss_sum": self.loss_sum,
                   "correct": self.correct, "seen": self.seen, "seconds": self.seconds}
        best = {"best_epoch": self.best_epoch} if self.best_epoch else {}  # absent: unknown
        return {"epoch": self.epoch, "step": self.step, "best_val_acc": self.best_val_acc,
                **best, "partial": partial if self.mid_epoch else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Position:
        partial = state.get("partial") or {}
        return cls(epoch=int(state["epoch"]), step=int(state["step"]),
                   batch=int(partial.get("batch", 0)),
                   loss_sum=float(partial.get("loss_sum", 0.0)),
                   correct=int(partial.get("correct", 0)), seen=int(partial.get("seen", 0)),
                   seconds=float(partial.get("seconds", 0.0)),
                   best_val_acc=float(state.get("best_val_acc", 0.0)),
                best_epoch=int(state.get("best_epoch", 0)))


class Hook:
    """Called by the loop at its boundaries; a hook overrides what it needs."""

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        """An event worth recording (step, epoch; the run adds start, resume, test)."""

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        """After every training step; cheap listeners only (progress bars)."""

    def on_epoch_end(self, position: Position) -> None:
        """After validation, once the epoch's event is recorded."""

    def on_stop(self, position: Position) -> None:
        """A stop request was honoured; `position` may be mid-epoch."""

    def on_test(self, test: dict[str, Any]) -> None:
        """The test set was evaluated (predictions and confidences included)."""


class Hooks(Hook):
    """Several hooks called in order: records first, then checkpoints, then status."""

    def __init__(self, *hooks: Hook | None) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        for h in self.hooks:
            h.on_event(event, sync)

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        for h in self.hooks:
            h.on_batch(epoch, batch, batches, step, images)

    def on_epoch_end(self, position: Position) -> None:
        for h in self.hooks:
            h.on_epoch_end(position)

    def on_stop(self, position: Position) -> None:
        for h in self.hooks:
            h.on_stop(position)

    def on_test(self, test: dict[str, Any]) -> None:
        for h in self.hooks:
            h.on_test(test)

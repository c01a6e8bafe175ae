"""The training loop: `fit` runs epochs from a `Position`, `train_epoch` runs one of them.

It knows nothing of records, files or people: what happens at its boundaries is up to the hooks
it is given (`lab.core.hooks`). Loss and accuracy accumulate on the device and are read back only
at logging points, so CUDA never waits for the host between steps. Batch order and augmentation
of epoch e depend only on (seed, e, rank), so a run resumed from a `Position` continues exactly
where it stopped. One process or one rank of many: sums are reduced over the ranks, and a stop
request is agreed on by all of them, so every rank stops at the same step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from lab.core.collectives import Dist, all_sum, any_rank, gather_objects
from lab.core.device import autocast
from lab.core.evaluate import evaluate_part
from lab.core.hooks import Hook, Position
from lab.core.parts import Parts
from lab.core.prepare import Prepared
from lab.core.stopping import EarlyStop, Stopped
from lab.data.loader import DeviceLoader
from lab.errors import RunFailed

ShouldStop = Callable[[], bool] | None


def fit(parts: Parts, data: Prepared, position: Position, epochs: int, hooks: Hook,
        should_stop: ShouldStop = None, dist: Dist | None = None,
        early_stop: EarlyStop | None = None) -> Position:
    """Train from `position` through epoch `epochs`, validating after each epoch.

    `should_stop` is polled after every batch; when it says stop, the hooks' `on_stop` sees
    where training stands (mid-epoch included) and `Stopped` is raised. `early_stop` is asked
    before each epoch (a resumed run included) and ends training when it gives a reason, which
    is recorded as a `stopped` event of the epoch not trained; every rank sees the same
    validation accuracy, so every rank stops at the same epoch."""
    dist = dist or Dist.single()
    for epoch in range(position.epoch + 1, epochs + 1):
        reason = early_stop(position) if early_stop is not None and not position.mid_epoch \
            else None
        if reason:
            hooks.on_event({"event": "stopped", "epoch": epoch, "step": position.step,
                            "reason": reason}, sync=True)
            break
        # train (or finish the epoch a stop interrupted)
        t0, spent = time.perf_counter(), position.seconds
        stats = train_epoch(parts, data.train, position, hooks, should_stop, dist)
        seconds = time.perf_counter() - t0 + spent
        if stats is None:
            position.seconds = seconds
            hooks.on_stop(position)
            raise Stopped
        # validate
        val = evaluate_part(parts, data, "val", dist)
        position.next_epoch(val["acc"])
        # record, then checkpoint: a crash between the two leaves an epoch that resume redoes
        hooks.on_event({"event": "epoch", "epoch": epoch, "step": position.step, **stats,
                        "val_loss": val["loss"], "val_acc": val["acc"],
                        "seconds": round(seconds, 3),
                        "images_per_s": round(data.train_images / max(seconds, 1e-9), 1),
                        "lr": parts.optimizer.param_groups[0]["lr"]}, sync=True)
        hooks.on_epoch_end(position)
        # a stop asked during the last batch or the validation: the checkpoint is written
        if should_stop is not None and any_rank(dist, should_stop()):
            raise Stopped
    return position


def train_epoch(parts: Parts, loader: DeviceLoader, position: Position, hooks: Hook,
                should_stop: ShouldStop = None, dist: Dist | None = None,
                ) -> dict[str, float] | None:
    """One pass over the training set, or its rest from `position.batch`; advances `position`.

    Returns the epoch's mean loss and accuracy, or None when `should_stop` said stop (then
    `position` holds the batch reached and the running sums, summed over the ranks)."""
    dist = dist or Dist.single()
    parts.net.train()
    epoch, start, batches = position.epoch + 1, position.batch, len(loader)
    loader.set_epoch(epoch, start_batch=start)
    mine = dist.main  # the sums carried from an interrupted epoch are global: counted on rank 0
    sums = _Sums(parts.device, position.loss_sum if mine else 0.0,
                 position.correct if mine else 0, position.seen if mine else 0)
    for i, (images, labels) in enumerate(loader, start=start + 1):
        loss, logits = _step(parts, images, labels)
        position.step += 1
        sums.add(loss, logits, labels, position.step)
        logging_point = is_logging_point(position.step, parts.log_every) or i == batches
        if logging_point:
            mean = sums.window_mean(dist)
            if not math.isfinite(mean):
                raise _diverged(mean, sums, dist, epoch, position.step, i, batches)
            hooks.on_event({"event": "step", "epoch": epoch, "step": position.step,
                            "loss": round(mean, 6), "lr": parts.optimizer.param_groups[0]["lr"]})
        hooks.on_batch(epoch, i, batches, position.step, labels.shape[0])
        if should_stop is not None and i < batches and (logging_point or not dist.active) \
                and any_rank(dist, should_stop()):
            loss_sum, correct, seen = sums.totals(dist)
            position.batch, position.loss_sum = i, loss_sum
            position.correct, position.seen = correct, seen
            return None
    loss_sum, correct, seen = sums.totals(dist)
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}


def is_logging_point(step: int, log_every: int) -> bool:
    """Every `log_every` steps, and densely before the first of them (steps 1, 2, 4, 8, ...):
    a curve gets its first point after one step, not after `log_every` (20 by default)."""
    return step % log_every == 0 or (step < log_every and step & (step - 1) == 0)


def _step(parts: Parts, images: torch.Tensor, labels: torch.Tensor,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, optimizer and schedule: one training step."""
    with autocast(parts.device, parts.autocast_dtype):
        logits = parts.net(images)
        loss = parts.loss_fn(logits.float(), labels)
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        parts.optimizer.step()
    if parts.scheduler is not None:
        parts.scheduler.step()
    return loss.detach(), logits.detach()


class _Sums:
    """The epoch's running sums and the logging window, kept on the device."""

    def __init__(self, device: torch.device, loss_sum: float, correct: int, seen: int) -> None:
        self.loss_sum = torch.full((), loss_sum, device=device, dtype=torch.float64)
        self.correct = torch.full((), correct, device=device, dtype=torch.int64)
        self.seen = seen
        self.window = torch.zeros((), device=device, dtype=torch.float64)
        self.window_n = 0
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)  # step of a NaN

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            step: int) -> None:
        n, value = labels.shape[0], loss.double()
        self.first_bad.masked_fill_((self.first_bad < 0) & ~torch.isfinite(value), step)
        self.loss_sum += value * n
        self.window += value
        self.window_n += 1
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += n

    def window_mean(self, dist: Dist) -> float:
        """The mean loss since the last logging point, over the ranks; resets the window."""
        mean = all_sum(dist, self.window)[0].item() / (self.window_n * dist.world)
        self.window.zero_()
        self.window_n = 0
        return mean

    def totals(self, dist: Dist) -> tuple[float, int, int]:
        loss_sum, correct, seen = all_sum(dist, self.loss_sum, self.correct, self.seen)
        return loss_sum.item(), int(correct.item()), int(seen)


def _diverged(value: float, sums: _Sums, dist: Dist, epoch: int, step: int, batch: int,
              batches: int) -> RunFailed:
    """Name the step where the loss first stopped being finite, on any rank."""
    bads = [b for b in gather_objects(dist, int(sums.first_bad.item())) if b >= 0]
    bad = min(bads) if bads else step
    return RunFailed(
        f"training diverged: the loss became {value} in epoch {epoch} at step {bad} "
        f"(batch {batch - (step - bad)} of {batches}); the last checkpoint is untouched",
        hint="lower the learning rate (--lr) or train in fp32 (--precision fp32)")


__all__ = ["Position", "Stopped", "fit", "is_logging_point", "train_epoch"]

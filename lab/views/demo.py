"""What `lab demo` says while it trains: the level, its stage and epoch, and how long is left.

The demo trains its levels one after the other in one process. This listener sits beside each
level's progress printer and adds a line at every stage (setting up, each epoch, testing and
Grad-CAM, done) with the time left for the level and for the whole demo. Estimates come from
what has been measured so far: the level's own pace once it trains, an earlier level's pace
for a level of the same model, and a prior ratio between the models until both have run; the
set-up and finishing of a level that has not run yet are taken from those that have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Seconds per training epoch relative to ResNet18's, at the demo's size (measured on a 2-core
# CPU at 32 px: 0.18): only used until both kinds of model have trained an epoch.
PRIOR_EPOCH_COST = {"resnet18": 1.0, "cnn": 0.2}
NOTE_EVERY_S = 10.0  # a line at least this often while a long epoch trains


def clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}"


@dataclass
class LevelPlan:
    label: str  # "L1"
    title: str  # "Level 1, ResNet18 from scratch"
    model: str  # a key of PRIOR_EPOCH_COST
    epochs: int
    # measured
    began: float | None = None
    trained: float | None = None  # the start event: data and model are ready
    epoch_ends: list[float] = field(default_factory=list)
    ended: float | None = None

    @property
    def setup_s(self) -> float | None:
        return None if self.began is None or self.trained is None else self.trained - self.began

    @property
    def epoch_s(self) -> float | None:
        if self.trained is None or not self.epoch_ends:
            return None
        return (self.epoch_ends[-1] - self.trained) / len(self.epoch_ends)

    @property
    def finish_s(self) -> float | None:
        if self.ended is None or not self.epoch_ends:
            return None
        return self.ended - self.epoch_ends[-1]


class DemoProgress:
    """`level(i)` gives the event listener for level i; `say` prints one line."""

    def __init__(self, plan: list[LevelPlan], say: Callable[[str], None],
                 now: Callable[[], float] = time.monotonic) -> None:
        self.plan, self.say, self.now = plan, say, now
        self.t0 = now()
        self.current = 0
        self._steps = 0  # batches of the current epoch so far
        self._batches = 0
        self._last_line = self.t0

    def level(self, index: int) -> Callable[[dict[str, Any]], None]:
        self.current = index
        level = self.plan[index]
        level.began = self.now()
        self._line(f"setting up ({level.title}, {level.epochs} epoch"
                   f"{'s' if level.epochs != 1 else ''})")
        return self.on_event

    def on_event(self, event: dict[str, Any]) -> None:
        level, kind = self.plan[self.current], event.get("event")
        if kind == "start":
            level.trained = self.now()
            self._line(f"training, epoch 1/{level.epochs}")
        elif kind == "batch":
            self._steps, self._batches = int(event["batch"]), int(event["batches"])
            if self.now() - self._last_line >= NOTE_EVERY_S:
                self._line(f"training, epoch {event['epoch']}/{level.epochs}, "
                           f"batch {self._steps}/{self._batches}")
        elif kind == "epoch":
            level.epoch_ends.append(self.now())
            done = len(level.epoch_ends)
            stage = (f"epoch {done}/{level.epochs} done, training epoch {done + 1}"
                     if done < level.epochs else f"epoch {done}/{level.epochs} done, testing")
            self._line(stage)
        elif kind == "test":
            self._line("Grad-CAM gallery")
        elif kind == "done":
            level.ended = self.now()
            self._line(f"done in {clock(level.ended - (level.began or level.ended))}")

    # ---- estimates ---------------------------------------------------------------------------
    def _pace(self, level: LevelPlan) -> float | None:
        """Seconds per epoch measured on `level` itself: its epochs, or its first epoch's
        batches so far."""
        if level.epoch_s is not None:
            return level.epoch_s
        if level.trained is not None and self._steps and self._batches and \
                level is self.plan[self.current]:
            return (self.now() - level.trained) * self._batches / self._steps
        return None

    def _epoch_s(self, level: LevelPlan) -> float | None:
        """Seconds per epoch of `level`: its own pace, an earlier level's of the same model, or
        another level's times the prior ratio between their models."""
        own = self._pace(level)
        if own is not None:
            return own
        measured = [(p, pace) for p in self.plan if (pace := self._pace(p)) is not None]
        same = [pace for p, pace in measured if p.model == level.model]
        if same:
            return same[-1]
        if measured:
            ref, pace = measured[-1]
            return pace * PRIOR_EPOCH_COST.get(level.model, 1.0) / \
                PRIOR_EPOCH_COST.get(ref.model, 1.0)
        return None

    def _mean(self, values: list[float | None]) -> float:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else 0.0

    def left(self, index: int) -> float | None:
        """Seconds left in level `index` (None while nothing is known to estimate from)."""
        level = self.plan[index]
        if level.ended is not None:
            return 0.0
        epoch = self._epoch_s(level)
        if epoch is None:
            return None
        setup = self._mean([p.setup_s for p in self.plan])
        finish = self._mean([p.finish_s for p in self.plan])
        now = self.now()
        if level.trained is None:  # not training yet
            spent = now - level.began if level.began is not None else 0.0
            return max(0.0, setup - spent) + level.epochs * epoch + finish
        done = len(level.epoch_ends)
        if done < level.epochs:
            since = now - (level.epoch_ends[-1] if level.epoch_ends else level.trained)
            return max(0.0, epoch - since) + (level.epochs - done - 1) * epoch + finish
        return max(0.0, finish - (now - level.epoch_ends[-1]))

    def _line(self, stage: str) -> None:
        level = self.plan[self.current]
        head = f"demo {self.current + 1}/{len(self.plan)} {level.label}: {stage}"
        this = self.left(self.current)
        rest = [self.left(i) for i in range(self.current + 1, len(self.plan))]
        if this is None or any(r is None for r in rest):
            eta = "ETA: measuring"
        else:
            total = this + sum(r for r in rest if r is not None)
            eta = (f"ETA level {clock(this)}, all {clock(total)}" if level.ended is None
                   else f"ETA all {clock(total)}")
        self._last_line = self.now()
        self.say(f"{head}  [{eta}; {clock(self._last_line - self.t0)} elapsed]")

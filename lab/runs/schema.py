"""The vocabulary of the records: job and run states, and the events of `metrics.jsonl`.

Defined once here and used by the engine, the queue, the CLI and the TUI, so a state or an event
field has one spelling. Events are plain dicts on disk (one JSON object a line); the TypedDicts
say what each kind holds, and `check_event` is what every reader uses to decide whether a line
is an event it can trust.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypedDict


class State(str, Enum):
    """A job's or a run's state; the value is what the records hold."""

    CREATED = "created"  # a run directory exists, training has not begun
    QUEUED = "queued"  # a job waits for a worker
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by a signal or a crash; resumable
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


RUN_STATES = (State.CREATED, State.RUNNING, State.DONE, State.FAILED, State.INTERRUPTED,
              State.CANCELLED)
RUN_FINISHED = (State.DONE, State.FAILED, State.INTERRUPTED, State.CANCELLED)
JOB_STATES = (State.QUEUED, State.RUNNING, State.DONE, State.FAILED, State.CANCELLED,
              State.INTERRUPTED)
JOB_FINISHED = (State.DONE, State.FAILED, State.CANCELLED)  # an interrupted job is claimed again
CLAIMABLE = (State.QUEUED, State.INTERRUPTED)


# ---- events of metrics.jsonl ---------------------------------------------------------------
class StartEvent(TypedDict):
    event: str  # "start"
    epoch: int
    step: int
    time: str
    device: str
    precision: str
    epochs: int
    steps_per_epoch: int
    classes: list[str]
    split: dict[str, Any]
    notes: list[str]


class ResumeEvent(TypedDict, total=False):
    event: str  # "resume"
    epoch: int  # the last whole epoch kept
    step: int
    time: str
    batch: int  # present when it resumed mid-epoch
    fallback: str  # present when the newest checkpoint was unusable


class StepEvent(TypedDict):
    event: str  # "step": a logging point, the mean loss since the previous one
    epoch: int
    step: int
    loss: float
    lr: float


class EpochEvent(TypedDict):
    event: str  # "epoch"
    epoch: int
    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    images_per_s: float
    lr: float


class TestEvent(TypedDict):
    event: str  # "test"
    epoch: int
    step: int
    test_loss: float
    test_acc: float


Event = StartEvent | ResumeEvent | StepEvent | EpochEvent | TestEvent

# The type of each field a reader computes with, wherever it appears. A field may be missing
# (an older lab wrote fewer); one that is present with another type makes the line unusable.
_INT, _NUM = "int", "number"
FIELD_TYPES: dict[str, str] = {
    "epoch": _INT, "step": _INT, "batch": _INT, "epochs": _INT, "steps_per_epoch": _INT,
    "loss": _NUM, "lr": _NUM, "train_loss": _NUM, "train_acc": _NUM, "val_loss": _NUM,
    "val_acc": _NUM, "seconds": _NUM, "images_per_s": _NUM, "test_loss": _NUM, "test_acc": _NUM,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def check_event(obj: Any) -> str | None:
    """Why `obj` is not a usable event, or None when it is: an object with a kind, whose
    numeric fields (`FIELD_TYPES`) are finite numbers where present. Kinds this version does
    not know pass: a newer lab may add some."""
    if not isinstance(obj, dict):
        return "not an object"
    kind = obj.get("event")
    if not isinstance(kind, str):
        return "no event kind"
    for name, kind_of in FIELD_TYPES.items():
        if name in obj:
            value = obj[name]
            if kind_of == _INT and not _is_int(value):
                return f"{kind} event: {name} is not an integer"
            if kind_of == _NUM and not _is_number(value):
                return f"{kind} event: {name} is not a finite number"
    return None

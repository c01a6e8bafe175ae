"""The vocabulary of the records: job and run states, the events of `metrics.jsonl`, and the
shapes of `status.json`, `result.json` and `config.json`.

Defined once here and used by the engine, the queue, the CLI and the TUI, so a state or a field
has one spelling. Records are plain JSON on disk, which anyone can edit or cut short; the shapes
below are what every reader checks before it uses one (`check_event` for a line of events,
`check_status`, `check_result` and `check_config` for whole files), so a record of the wrong
shape is reported as corrupt, naming the field, instead of failing somewhere in a view.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypedDict

from lab.shapes import (
    ANY,
    BOOL,
    COUNT,
    INT,
    NUM,
    STR,
    Int,
    ListOf,
    Maybe,
    Obj,
    OneOf,
    Shape,
    problem,
)


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
    mirror: dict[str, Any]  # the run's mirror decision (`MIRROR`); absent before it existed
    data_on: str  # where the images waited: device | host | disk (absent before it existed)
    data_on_reason: str  # why there (auto's measure, or "as asked")


class ResumeEvent(TypedDict, total=False):
    event: str  # "resume"
    epoch: int  # the last whole epoch kept
    step: int
    time: str
    batch: int  # present when it resumed mid-epoch
    fallback: str  # present when the newest checkpoint was unusable
    provenance: dict[str, Any]  # lab.runs.provenance.short(): who resumed it, where


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


class StoppedEvent(TypedDict):
    event: str  # "stopped": training ended early (early stopping), before this epoch
    epoch: int  # the first epoch not trained
    step: int
    reason: str  # e.g. "patience: no val_acc gain for 3 epochs after epoch 4"


class TestEvent(TypedDict):
    event: str  # "test"
    epoch: int
    step: int
    test_loss: float
    test_acc: float


Event = StartEvent | ResumeEvent | StepEvent | EpochEvent | StoppedEvent | TestEvent

# Whether the run mirrored images (lab.data.mirror): one decision for flip augmentation and flip
# TTA at validation and test. Runs written before it existed have no "mirror" field.
MIRROR = Obj(required={"ok": BOOL},
             optional={"reason": STR, "hflip": NUM, "tta": BOOL})

# The type of each field a reader computes with, wherever it appears. A field may be missing
# (an older lab wrote fewer); one that is present with another type makes the line unusable.
FIELD_TYPES: dict[str, Shape] = {
    "epoch": COUNT, "step": COUNT, "batch": COUNT, "epochs": COUNT, "steps_per_epoch": COUNT,
    "loss": NUM, "lr": NUM, "train_loss": NUM, "train_acc": NUM, "val_loss": NUM,
    "val_acc": NUM, "seconds": NUM, "images_per_s": NUM, "test_loss": NUM, "test_acc": NUM,
    "time": STR, "device": STR, "precision": STR, "fallback": STR, "reason": STR,
    "classes": ListOf(STR), "notes": ListOf(STR), "split": Obj(), "mirror": MIRROR,
    "provenance": Obj(), "data_on": OneOf("device", "host", "disk"), "data_on_reason": STR,
}
# The fields of each kind that readers index without checking (others they look up with .get).
_EVENT_REQUIRED = {"step": ("epoch",), "epoch": ("epoch",), "resume": ("epoch",)}
_EVENTS = {kind: Obj(dict.fromkeys(("event", *need), ANY), FIELD_TYPES)
           for kind, need in _EVENT_REQUIRED.items()}
_ANY_EVENT = Obj({"event": STR}, FIELD_TYPES)


def check_event(obj: Any) -> str | None:
    """Why `obj` is not a usable event, or None when it is: an object with a kind, the fields
    its kind always has, and its known fields (`FIELD_TYPES`) of their types where present
    (numbers finite and within 64 bits). Kinds this version does not know pass if their known
    fields are well typed: a newer lab may add some."""
    kind = obj.get("event") if isinstance(obj, dict) else None
    return problem(obj, _EVENTS.get(kind, _ANY_EVENT) if isinstance(kind, str) else _ANY_EVENT)


# ---- whole records -------------------------------------------------------------------------
_TEXT = Maybe(STR)
_PID = Int(-(2**31), 2**31 - 1)  # what os.kill accepts
STATUS = Obj(
    required={"state": OneOf(*RUN_STATES)},
    optional={"epoch": COUNT, "step": COUNT, "pid": Maybe(_PID), "host": _TEXT, "error": _TEXT,
              "created": _TEXT, "updated": _TEXT, "started": _TEXT, "finished": _TEXT,
              "device": _TEXT, "job": Maybe(INT), "world_size": Maybe(COUNT),
              "gradcam_error": _TEXT, "pruned": _TEXT})

_PER_CLASS = Obj({"class": STR, "precision": NUM, "recall": NUM, "f1": NUM, "support": COUNT})
_PAIR = Obj({"true": STR, "predicted": STR, "count": COUNT, "share": NUM})
# The fields the views draw from, written by every lab since the first version: required.
# The others are typed where present (a hand-made or older result may lack them).
RESULT = Obj(
    required={"test_acc": NUM, "classes": ListOf(STR, min_len=1), "per_class": ListOf(_PER_CLASS),
              "confusion": ListOf(ListOf(COUNT)), "most_confused": ListOf(_PAIR)},
    optional={"run_id": STR, "level": Maybe(INT), "model": STR, "dataset": STR,
              "best_val_acc": Maybe(NUM), "best_epoch": Maybe(COUNT), "test_loss": Maybe(NUM),
              "epochs_trained": COUNT, "stopped": _TEXT,
              "tested": Obj(required={"weights": OneOf("last", "best"), "epoch": COUNT},
                            optional={"asked": STR, "why": STR}),
              "macro": Maybe(Obj({"precision": NUM, "recall": NUM, "f1": NUM})),
              "timings": Obj(optional={k: Maybe(NUM) for k in (
                  "train_seconds", "eval_seconds", "total_seconds")}),
              "throughput": Obj(optional={k: Maybe(NUM) for k in (
                  "train_images_per_s", "eval_images_per_s")}),
              "epochs": COUNT, "split": Obj(), "notes": ListOf(STR), "augmentation": STR,
              "mirror": MIRROR, "data_on": OneOf("device", "host", "disk"),
              "device": STR, "precision": STR, "torch": STR, "finished": STR,
              "world_size": COUNT, "sync_bn": BOOL, "system": Obj()})

# The config fields written since the first version: a config.json without one of them was not
# written by any lab. Later fields may be missing (an older run) and take their defaults.
CONFIG_REQUIRED = ("model", "weights", "dataset", "image_size", "augment", "dropout",
                   "optimizer", "lr", "weight_decay", "batch_size", "epochs", "seed", "device",
                   "precision")
CONFIG = Obj(required=dict.fromkeys(CONFIG_REQUIRED, ANY))


def check_status(obj: Any) -> str | None:
    """Why `obj` is not a usable `status.json`, or None."""
    return problem(obj, STATUS)


def check_result(obj: Any) -> str | None:
    """Why `obj` is not a usable `result.json`, or None: the shape, and a confusion matrix and
    per-class table that match the class list (the views draw one from the other)."""
    why = problem(obj, RESULT)
    if why is not None:
        return why
    n = len(obj["classes"])
    if len(obj["confusion"]) != n or any(len(row) != n for row in obj["confusion"]):
        return f"confusion is not {n} x {n} (a row and a column per class)"
    if len(obj["per_class"]) > n:
        return f"per_class has {len(obj['per_class'])} rows for {n} classes"
    return None


def check_config(obj: Any) -> str | None:
    """Why `obj` is not a `config.json` of a run, or None; its values are checked by
    `RunConfig.from_dict`, which the reader calls next."""
    return problem(obj, CONFIG)

"""Turning training events into progress for a person: a Rich bar on a terminal, lines in a log.

The engine only emits events; this listener decides how they look. On a terminal it draws one
bar per epoch with loss, images/s and ETA; when stderr is a file or a pipe (batch jobs) it
prints one plain line per epoch, which is what a Slurm log should hold.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lab.views.sizes import bytes_text


class ProgressPrinter:
    def __init__(self, console: Console | None, label: str, quiet: bool = False,
                 rich_bar: bool | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.label = label
        self.quiet = quiet
        self.rich_bar = self.console.is_terminal if rich_bar is None else rich_bar
        self.epochs = 0
        self.progress: Progress | None = None
        self.task: Any = None
        self._task_epoch: int | None = None
        self.last_loss: float | None = None
        self._epoch_t0 = time.perf_counter()
        self._images = 0

    def __enter__(self) -> ProgressPrinter:
        if self.rich_bar and not self.quiet:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event.get("event")
        if kind == "start":
            self.epochs = int(event["epochs"])
            split = event.get("split", {})
            self._line(f"{self.label}: {split.get('train')} train / {split.get('val')} val / "
                       f"{split.get('test')} test images on {event['device']} "
                       f"({event['precision']})" + _data_on(event))
            for note in event.get("notes", []):
                self._line(f"{self.label}: note: {note}")
        elif kind == "resume":
            where = (f"in epoch {event['epoch'] + 1} at batch {event['batch']}"
                     if event.get("batch") else f"after epoch {event['epoch']}")
            self._line(f"{self.label}: resuming {where}")
        elif kind == "warning":
            self._line(f"{self.label}: warning: {event['message']}")
        elif kind == "batch":
            self._batch(event)
        elif kind == "step":
            self.last_loss = float(event["loss"])
        elif kind == "epoch":
            self._line(
                f"{self.label} epoch {event['epoch']}/{self.epochs or '?'}  "
                f"train loss {event['train_loss']:.4f} acc {100 * event['train_acc']:.2f}%  "
                f"val loss {event['val_loss']:.4f} acc {100 * event['val_acc']:.2f}%  "
                f"{event['images_per_s']:,.0f} img/s  {event['seconds']:.1f}s")
        elif kind == "gradcam":
            self._line(gradcam_line(self.label, event))
        elif kind == "stopped":
            self._line(f"{self.label} stopped before epoch {event['epoch']}: {event['reason']}")
        elif kind == "pruned":
            self._line(f"{self.label} pruned: resume checkpoints removed, "
                       f"{bytes_text(event['freed_bytes'])} freed")
        elif kind == "test":
            self._line(f"{self.label} test accuracy {100 * event['test_acc']:.2f}%  "
                       f"(loss {event['test_loss']:.4f})")

    def _batch(self, event: dict[str, Any]) -> None:
        if self.progress is None:
            return
        if self.task is None or event["epoch"] != self._task_epoch:
            self._task_epoch = event["epoch"]
            if self.task is not None:
                self.progress.remove_task(self.task)
            self._epoch_t0, self._images = time.perf_counter(), 0
            self.task = self.progress.add_task(
                f"{self.label} epoch {event['epoch']}/{self.epochs or '?'}",
                total=event["batches"], completed=event["batch"] - 1, loss="…", speed="")
        self._images += int(event.get("images", 0))
        rate = self._images / max(time.perf_counter() - self._epoch_t0, 1e-9)
        loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "…"
        self.progress.update(self.task, completed=event["batch"], loss=loss,
                             speed=f"{rate:,.0f} img/s")

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def gradcam_line(label: str, event: dict[str, Any]) -> str:
    """The end-of-run gallery's line, with the command that shows it for this very run."""
    layer = f" on {event['layer']}" if event.get("layer") else ""
    see = f" (see it: lab gradcam show {event['run']})" if event.get("run") else ""
    return f"{label} Grad-CAM gallery: {event['count']} images{layer}{see}"


def _data_on(event: dict[str, Any]) -> str:
    """Where the images wait, on the run's first line (absent from older start events)."""
    mode = event.get("data_on")
    if not mode:
        return ""
    reason = event.get("data_on_reason")
    return f", data on {mode}" + (f" ({reason})" if reason else "")

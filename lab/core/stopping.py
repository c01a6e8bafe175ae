"""Graceful stops: SIGTERM or Ctrl-C ends the current step, writes a checkpoint, then stops;
and early stopping, when validation accuracy has stopped improving (`Patience`).

`SignalStop` is the `should_stop` callback `fit` polls after every batch. The first SIGINT or
SIGTERM only sets it; the loop then saves where it is and raises `Stopped`. What a further
signal does is the caller's choice: in a terminal (`lab run`) a second Ctrl-C stops at once
(losing at most the current epoch, as a crash would); in a queued job it is ignored, because a
terminal's Ctrl-C reaches the worker and its job together and the worker then forwards SIGTERM.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from lab.core.hooks import Position

# Asked by the loop before each epoch: a reason to end training there, or None to go on.
EarlyStop = Callable[[Position], str | None]

_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class SignalStop:
    """Context manager installing the handlers (main thread only); restores the old ones."""

    def __init__(self, escalate: bool = True, announce: bool = True) -> None:
        self.escalate, self.announce = escalate, announce
        self.signal: str | None = None
        self._saved: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = _NAMES.get(signum, str(signum))
            if self.announce:
                more = "; Ctrl-C again to stop at once" if self.escalate else ""
                os.write(2, f"\n{self.signal}: stopping after this step, saving a checkpoint"
                            f"{more}\n".encode())
        elif self.escalate:
            raise KeyboardInterrupt

    def __enter__(self) -> SignalStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()


class Stopped(KeyboardInterrupt):
    """Raised after a stop request was honoured: the step finished and a checkpoint was written."""


class Patience:
    """Stop once `patience` epochs have passed without a better validation accuracy than the
    best so far (ties are no gain). Reads only the `Position`, which a checkpoint keeps, so a
    resumed run counts from where it was; `patience` 0 never stops."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def __call__(self, position: Position) -> str | None:
        if self.patience <= 0 or position.best_epoch <= 0:
            return None
        waited = position.epoch - position.best_epoch
        if waited < self.patience:
            return None
        return (f"patience: no val_acc gain for {waited} epoch{'s' if waited > 1 else ''} "
                f"after epoch {position.best_epoch}")

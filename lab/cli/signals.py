"""Signals that end a command unwind it, so its cleanup runs.

Python's default action for SIGTERM and SIGHUP ends the process on the spot: no `finally`, no
`except BaseException: remove the temp folder`, no shutting down of a decoder pool. So a `kill`
or a dropped SSH link left temp folders and worker processes behind. Here SIGINT, SIGTERM and
SIGHUP all raise `Interrupted` (a `KeyboardInterrupt`, which every command already handles) in
the main thread, and the CLI exits 130. Commands that stop more gently (`lab run`'s checkpoint
at the next step, a worker interrupting its jobs) install their own handlers inside this one.

Only the first signal raises: later ones are ignored, so a second Ctrl-C or the SIGTERM that
often follows a SIGHUP cannot cut the cleanup of the first short (SIGKILL still ends it at once,
and decoder processes die with their parent even then). A signal that was ignored when the
command started (`nohup`, a background job's SIGINT) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """Raised by the first SIGINT, SIGTERM or SIGHUP; `name` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


@contextmanager
def interrupt_on_signals(seen: list[int] | None = None) -> Iterator[list[int]]:
    """Within the block, the first handled signal raises `Interrupted`; yields the signals seen
    (appended to `seen` when given).

    The first signal may come while the handlers are still being installed, so `Interrupted`
    can leave the `with` statement itself, not only its body: a caller that must not die of it
    catches it outside the block, and passes `seen` to learn which signal it was.

    The handlers stay ignoring after a signal fired (the process is on its way out and must
    finish cleaning up); otherwise the previous ones come back. Outside the main thread it does
    nothing: Python delivers signals to the main thread only.
    """
    seen = [] if seen is None else seen
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise Interrupted(signum)

    saved = {}
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            saved[sig] = signal.signal(sig, handle)
    try:
        yield seen
    finally:
        if not seen:
            for sig, previous in saved.items():
                signal.signal(sig, signal.SIG_DFL if previous is None else previous)

"""The console's own messages, in one place: what thread workers post with their results and what
a screen tells the app. Screens and the app import this module rather than each other, so the
app passes attributes down to its screens and the screens answer with these messages.

A widget's messages (`RunList.Highlighted`, `RunList.MarksChanged`, `RunTable.MarkToggled`) stay
nested in the widget, as Textual's own widgets do: they are the widget's public interface and
their handler names (`on_run_list_highlighted`, ...) come from the nesting.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.detail import RunDetail
from tui.device import DeviceStat
from tui.model import Snapshot


class ListReady(Message):
    """The list has been read once: the console is usable (bubbles from the screen to the app)."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows


class RowsLoaded(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class DetailLoaded(Message):
    def __init__(self, detail: RunDetail) -> None:
        super().__init__()
        self.detail = detail


class OverlayLoaded(Message):
    """The marked runs' epoch events by label, and the groups they form (name -> labels)."""

    def __init__(self, series: dict[str, list[dict]],
                 groups: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.series = series
        self.groups = groups or {}


class DevicesSampled(Message):
    def __init__(self, stats: list[DeviceStat]) -> None:
        super().__init__()
        self.stats = stats


class ReadProblem(Message):
    """A background read failed as a whole (not one run: those show on their row)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ActionDone(Message):
    """A queue action, a worker start or a gallery finished: say so, then refresh."""

    def __init__(self, text: str, ok: bool = True, offer_worker: bool = False) -> None:
        super().__init__()
        self.text, self.ok, self.offer_worker = text, ok, offer_worker


class ComparisonLoaded(Message):
    """The compare screen's rows and curves, read off the UI thread (or why they could not be)."""

    def __init__(self, rows: list[dict[str, Any]], epochs: dict[str, list[dict]],
                 error: str | None, notes: list[str] | None = None,
                 groups: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.rows, self.epochs, self.error = rows, epochs, error
        self.notes = notes or []  # runs left out because a record of theirs is corrupt
        self.groups = groups or {}  # the runs that form a study's group: drawn as a band

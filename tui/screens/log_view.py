"""The full-screen log of a job (or the events of a run started outside the queue).

It follows the file as it grows (`F`/`end`; scrolling up stops following), searches it (`/`,
`n`, `N`), wraps long lines (`w`), and copes with a log that is huge (only its tail is read),
truncated or replaced (read again from the start, and said), or not there yet (said, and
watched for). The file is read in a thread worker every `poll_s`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from tui.logtail import MAX_BYTES, Change, LogTail
from tui.model import Row
from tui.widgets.keybar import KeyBar
from tui.widgets.log_pane import LogPane
from tui.widgets.record import event_line


@dataclass(frozen=True)
class LogSource:
    path: Path
    title: str
    events: bool = False  # metrics.jsonl: one event a line, shown as the Log tab shows it


def log_source(runs_dir: Path, row: Row | None) -> LogSource | None:
    """A job's output file; for a run started outside the queue, its event log."""
    if row is None:
        return None
    if row.job_id is not None:
        return LogSource(Path(runs_dir) / "jobs" / f"{row.job_id}.log",
                         f"job #{row.job_id} output")
    if row.run_id is not None:
        return LogSource(Path(runs_dir) / row.run_id / "metrics.jsonl",
                         f"{row.name} events", events=True)
    return None


def _event(line: str) -> str:
    try:
        event = json.loads(line)
    except ValueError:
        return line  # a torn line: shown as it is
    return event_line(event) if isinstance(event, dict) else line


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


class LogScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "back", tooltip="close the search, else back to the list"),
        Binding("slash", "search", "search", key_display="/",
                tooltip="search: type, enter; matches are highlighted"),
        Binding("n", "next_match", "next", tooltip="next match"),
        Binding("N", "next_match(False)", "previous", key_display="N",
                tooltip="previous match"),
        Binding("w", "wrap", "wrap", tooltip="wrap long lines, or not"),
        Binding("F", "follow", "follow", key_display="F/end",
                tooltip="follow the end as the log grows (scrolling up stops it)"),
    ]
    DEFAULT_CSS = """
    LogScreen { layout: vertical; }
    LogScreen > #log-title { height: 1; background: $panel; text-wrap: nowrap;
                             text-overflow: ellipsis; }
    LogScreen > #log-search { dock: bottom; display: none; }
    LogScreen > #log-search.-open { display: block; }
    LogScreen > #log-status { height: 1; background: $panel; text-wrap: nowrap;
                              text-overflow: ellipsis; }
    """

    class Read(Message):
        def __init__(self, change: Change) -> None:
            super().__init__()
            self.change = change

    def __init__(self, source: LogSource, *, poll_s: float = 0.5,
                 max_bytes: int = MAX_BYTES) -> None:
        super().__init__()
        self.source = source
        self.poll_s = poll_s
        self._tail = LogTail(source.path, max_bytes=max_bytes,
                             fmt=_event if source.events else None)
        self.missing = False
        self.skipped = 0
        self.file_size = 0
        self._reading: Worker | None = None
        self.said = ""  # the last thing the status line says about the search

    def compose(self) -> ComposeResult:
        yield Static(id="log-title")
        yield LogPane(id="log-pane")
        yield Input(placeholder="search (enter; escape to cancel)", id="log-search")
        yield Static(id="log-status")
        yield KeyBar()

    @property
    def pane(self) -> LogPane:
        return self.query_one(LogPane)

    def on_mount(self) -> None:
        self.pane.focus()
        self._draw_status()
        self.poll()
        self.set_interval(self.poll_s, self.poll)

    # ---- reading ---------------------------------------------------------------------------
    def poll(self) -> None:
        """One read at a time: each read moves the tail on, so none may be dropped."""
        if self._reading is None or self._reading.state not in (WorkerState.PENDING,
                                                                WorkerState.RUNNING):
            self._reading = self._read()

    @work(thread=True, group="log-read", exit_on_error=False)
    def _read(self) -> None:
        self.post_message(self.Read(self._tail.read()))

    def on_log_screen_read(self, message: Read) -> None:
        change = message.change
        self.missing, self.file_size = change.missing, change.size
        if change.reset:
            self.skipped = change.skipped
            self.pane.set_lines(change.lines)
            if self.said and self.pane._pattern is not None:
                self.pane.search(self.said)
        else:
            self.skipped += change.skipped
            self.pane.append(change.lines)
        if change.why in ("truncated", "replaced"):
            self.notify(f"the log was {change.why}: reading it again from the start",
                        severity="warning", timeout=6)
        self._draw_status()

    # ---- actions ---------------------------------------------------------------------------
    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_class("-open"):
            search.remove_class("-open")
            self.pane.focus()
            return
        self.dismiss()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("-open")
        search.value = ""
        search.focus()

    @on(Input.Submitted, "#log-search")
    def _searched(self, message: Input.Submitted) -> None:
        message.input.remove_class("-open")
        self.pane.focus()
        term = message.value
        self.said = term
        found = self.pane.search(term)
        if term and found:
            self.pane.next_match()
        elif term:
            self.notify(f"no match for {term!r}", severity="warning", timeout=4)
        self._draw_status()

    def action_next_match(self, forward: bool = True) -> None:
        if not self.said:
            self.notify("nothing to find yet: / to search", timeout=3)
        elif not self.pane.next_match(forward):
            self.notify(f"no match for {self.said!r}", severity="warning", timeout=4)
        self._draw_status()

    def action_wrap(self) -> None:
        self.pane.wrap = not self.pane.wrap

    def action_follow(self) -> None:
        self.pane.action_scroll_end()

    def on_log_pane_state_changed(self) -> None:
        self._draw_status()

    # ---- the two text lines ----------------------------------------------------------------
    def _draw_status(self) -> None:
        pane = self.pane
        title = Text.assemble((f" {self.source.title}", "bold"), " ─ ",
                              (str(self.source.path), "italic"))
        if self.missing:
            title.append("  (no such file yet: waiting for it)", style="yellow")
        elif self.skipped:
            title.append(f"  (the first {_size(self.skipped)} of {_size(self.file_size)} "
                         "not read: only the end of a big log)", style="yellow")
        self.query_one("#log-title", Static).update(title)
        status = Text(" ")
        status.append("following" if pane.follow else "follow off (F)",
                      style="green" if pane.follow else "yellow")
        status.append(f"  wrap {'on' if pane.wrap else 'off'} (w)  ")
        shown = len(pane.lines)
        status.append(f"{shown:,} lines" + (f" (the first {pane.dropped:,} let go)"
                                            if pane.dropped else ""))
        if self.said:
            if pane.matches:
                at = "–" if pane.current is None else f"{pane.current + 1}"
                status.append(f"  match {at}/{len(pane.matches)} for {self.said!r} (n/N)")
            else:
                status.append(f"  no match for {self.said!r}", style="bold red")
        self.query_one("#log-status", Static).update(status)

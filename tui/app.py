"""The Textual app: `make_app(...)` builds it for `lab tui`, the screenshot option and the tests.

The console is a client: it reads run records and the job queue and asks workers to do the
work, so it never trains in its own process and quitting it stops nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.device import DeviceProbe, DeviceStat
from tui.keys import OrderedKeys
from tui.messages import ListReady
from tui.screens.help import HelpScreen, binding_rows
from tui.screens.main import MainScreen
from tui.state import load_section, save_section
from tui.widgets.run_list import RunTable
from tui.widgets.run_tabs import TABS

PREFS = "console"  # the state file's section for marks, sort and theme


def remember(**values: object) -> None:
    """Keep some of the console's preferences for the next start (a failed write is dropped)."""
    save_section(PREFS, {**load_section(PREFS), **values})


class LabApp(OrderedKeys):  # keys in order: a burst types what the keys one by one would
    CSS_PATH = "lab.tcss"
    TITLE = "lab"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    key_effect_groups = frozenset({"queue"})  # a submit may ask "start a worker?"
    BINDINGS = [
        Binding("t", "toggle_dark", "theme", tooltip="light or dark theme"),
        Binding("question_mark,f1", "help", "help", key_display="?", tooltip="this help"),
        Binding("q", "quit", "quit", tooltip="quit the console (jobs and workers go on)"),
    ]

    def __init__(self, runs_dir: Path, data_dir: Path, *,
                 clock: Callable[[], float] = time.time,
                 device_probe: Callable[[], list[DeviceStat]] | None = None,
                 refresh_s: float = 2.0, poll_s: float = 0.5, theme: str | None = None) -> None:
        super().__init__()
        self.runs_dir, self.data_dir = Path(runs_dir), Path(data_dir)
        self.clock = clock
        self.device_probe = device_probe or DeviceProbe().sample
        self.refresh_s, self.poll_s = refresh_s, poll_s
        self.ready_rows: int | None = None
        self.prefs = load_section(PREFS)  # marks, sort and theme of the last session
        saved = self.prefs.get("theme")
        if theme:
            self.theme = theme
        elif isinstance(saved, str) and saved in self.available_themes:
            self.theme = saved

    @property
    def runs_label(self) -> str:
        try:
            shown = self.runs_dir.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = self.runs_dir
        return f"{shown}/"

    def get_default_screen(self) -> Screen:
        return MainScreen(self.runs_dir, self.data_dir, runs_label=self.runs_label,
                          device_probe=self.device_probe, clock=self.clock,
                          refresh_s=self.refresh_s, poll_s=self.poll_s, prefs=self.prefs,
                          remember=remember)

    def on_mount(self) -> None:
        """SIGTERM and SIGHUP (an SSH link dropping) quit like `q`, exit code 130: the terminal
        is given back and nothing is printed; the jobs and workers go on. (The CLI's handlers
        would raise inside Textual's loop, which prints the exception.)
        A runs directory that is missing or not a directory is said at once, not shown as an
        empty list that looks like no runs."""
        from lab.runs import runs_dir_problem

        problem = runs_dir_problem(self.runs_dir)
        if problem:
            later = "" if self.runs_dir.exists() else "; it is created when a job is submitted"
            self.notify(f"{problem}: nothing to show{later} (check --runs-dir or LAB_RUNS_DIR)",
                        title="runs directory", severity="warning", timeout=30)
        self.theme_changed_signal.subscribe(self, lambda theme: remember(theme=theme.name))
        if self.is_headless:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.exit, None, 130)

    def on_list_ready(self, message: ListReady) -> None:
        self.ready_rows = message.rows

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        bindings = [*Binding.make_bindings(RunTable.BINDINGS),
                    *Binding.make_bindings(MainScreen.BINDINGS),
                    *Binding.make_bindings(self.BINDINGS)]
        tabs = ", ".join(title for _pane, title in TABS)
        self.push_screen(HelpScreen([*binding_rows(bindings), ("1 … 7", f"tabs: {tabs}")]))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every console action by name in the command palette (ctrl+p)."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Light/dark theme", "Toggle between the light and dark theme",
                            self.action_toggle_dark)
        yield SystemCommand("Help", "Every key of the console", self.action_help)
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is None:
            return
        for title, help_text, action in (
            ("New job", "Queue a job: level, epochs, image size, batch, lr, data, priority",
             main.action_new_job),
            ("Cancel job", "Cancel the selected job", main.action_cancel_job),
            ("Retry job", "Queue the selected failed, cancelled or interrupted job again",
             main.action_retry_job),
            ("Compare", "Comparison table, change vs Level 1, test accuracy bars",
             main.action_compare),
            ("Start worker", "Start a detached worker that outlives the console",
             main.action_start_worker),
            ("Grad-CAM gallery", "Make a Grad-CAM gallery of the selected finished run",
             main.action_gradcam),
            ("Log (full screen)", "The selected row's log: follow, search, wrap",
             main.action_log_view),
            ("Filter list", "Show only rows matching some words", main.action_filter),
            ("Sort list", "Cycle: newest, state, accuracy, level, name", main.action_sort),
        ):
            yield SystemCommand(title, help_text, action)
        for pane, title in (("curves", "Curves"), ("per-class", "Per-class"),
                            ("confusion", "Confusion"), ("gradcam", "Grad-CAM"),
                            ("config", "Config"), ("log", "Log"), ("overlay", "Overlay")):
            yield SystemCommand(f"Tab: {title}", f"Show the {title} tab of the selected row",
                                lambda pane=pane: main.action_tab(pane))


def make_app(runs_dir: Path, data_dir: Path, *, clock: Callable[[], float] = time.time,
             device_probe: Callable[[], list[DeviceStat]] | None = None,
             refresh_s: float = 2.0, poll_s: float = 0.5, theme: str | None = None) -> LabApp:
    """The console on a runs directory, for `lab tui`, the screenshots and the tests. The clock
    (ages), the device probe and the timers are parameters so snapshots can hold still."""
    return LabApp(runs_dir, data_dir, clock=clock, device_probe=device_probe,
                  refresh_s=refresh_s, poll_s=poll_s, theme=theme)

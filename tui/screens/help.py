"""The help screen: every key of the console, built from the bindings themselves."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = (
    "The list holds the job queue and the runs on disk together, newest first; the tabs on "
    "the right belong to the selected row and follow a running job live. The console only "
    "reads records and talks to the queue: training happens in worker processes, so quitting "
    "here (or losing the SSH link) leaves every job running."
)
EXTRA_KEYS = (
    ("↑ ↓ pgup pgdn", "move in the list"),
    ("tab shift+tab", "move between the list, the tabs and their content"),
    ("ctrl+p", "command palette: every action by name"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "app.pop_screen", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = [*keys, *EXTRA_KEYS]  # (key, what it does), as the table shows them

    def compose(self) -> ComposeResult:
        rows = self.keys
        table = Table.grid(padding=(0, 1))
        # the keys are never cut: their column is as wide as the longest, the text wraps
        table.add_column(style="bold", no_wrap=True,
                         min_width=max(Text(key).cell_len for key, _ in rows))
        table.add_column(ratio=1)
        for key, description in rows:
            table.add_row(key, description)
        with VerticalScroll(id="dialog", classes="help"):
            yield Static(Text("lab console: keys", style="bold"))
            yield Static(table, id="help-keys")
            yield Static(Text(ABOUT, style="dim"), id="help-about")
            yield Static(Text("esc closes", style="dim"))


def binding_rows(bindings: list[Binding]) -> list[tuple[str, str]]:
    """(key, what it does) for every binding with a tooltip, keys merged per action."""
    rows: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for b in bindings:
        if not b.tooltip:
            continue
        keys = rows.setdefault(b.action, [])
        shown = b.key_display or {"question_mark": "?"}.get(b.key, b.key)
        if shown not in keys:
            keys.append(shown)
        names.setdefault(b.action, b.tooltip)
    return [(" ".join(keys), names[action]) for action, keys in rows.items()]

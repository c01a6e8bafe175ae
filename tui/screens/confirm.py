"""A yes/no question before the console does something: `y` says yes, `n` or escape says no.

`default` is the button that has focus, so enter answers it: no for anything destructive
(cancelling a job), yes only for a harmless offer (starting a worker).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No", *,
                 default: bool = False) -> None:
        super().__init__()
        self._question, self._yes, self._no, self._default = question, yes, no, default
        # Focus by selector once composed: a query in on_mount raised when the app closed (or
        # the answer came) while the dialog was still being mounted.
        self.AUTO_FOCUS = "#yes" if default else "#no"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Static(self._question, id="confirm-question")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="primary" if self._default else
                             "error", id="yes")
                yield Button(f"{self._no} (n)", variant="default" if self._default else
                             "primary", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

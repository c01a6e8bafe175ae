"""The new-job dialog: a level and a few overrides, checked exactly as `lab submit` checks them.

A blank field keeps the level's preset (its value is the placeholder), so the dialog never
silently changes what a level means. The dialog only validates; the main screen submits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from lab.errors import LabError
from lab.levels import LEVELS

FIELDS = (  # (input id, label, RunConfig field, Input type)
    ("epochs", "epochs", "epochs", "integer"),
    ("image-size", "image size", "image_size", "integer"),
    ("batch-size", "batch size", "batch_size", "integer"),
    ("lr", "learning rate", "lr", "number"),
    ("dataset", "dataset", "dataset", "text"),
    ("nproc", "processes", "nproc", "integer"),  # data-parallel: GPUs it takes
)


@dataclass(frozen=True)
class JobRequest:
    """What the dialog hands back: a validated config and its priority."""

    config: Any  # lab.config.RunConfig
    priority: int


class NewJobScreen(ModalScreen[JobRequest | None]):
    """Fields for level, epochs, image size, batch size, lr, dataset, processes (data-parallel,
    one GPU each) and priority."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, level: int = 1, dataset: str | None = None) -> None:
        super().__init__()
        self._level = level if level in LEVELS else 1
        self._dataset = dataset

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("New job", style="bold"), id="dialog-title")
            with Grid(id="job-form"):
                yield Label("level")
                yield Select([(f"Level {n}: {lv.title}", n) for n, lv in LEVELS.items()],
                             value=self._level, allow_blank=False, compact=True, id="level")
                for input_id, label, _field, kind in FIELDS:
                    yield Label(label)
                    yield Input(type=kind, compact=True, id=input_id,  # type: ignore[arg-type]
                                value=(self._dataset or "") if input_id == "dataset" else "")
                yield Label("priority")
                yield Input(type="integer", compact=True, id="priority", placeholder="0")
            yield Static(id="job-error")
            yield Static(Text("blank: the level's preset · enter or ctrl+s submits · "
                              "esc cancels", style="dim"), id="job-hint")
            with Horizontal(id="dialog-buttons"):
                yield Button("Submit", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._placeholders()
        self.query_one("#level", Select).focus()

    def _placeholders(self) -> None:
        preset = LEVELS[self._level].config
        for input_id, _label, field, _kind in FIELDS:
            self.query_one(f"#{input_id}", Input).placeholder = f"{getattr(preset, field):g}" \
                if isinstance(getattr(preset, field), float) else str(getattr(preset, field))

    @on(Select.Changed, "#level")
    def _level_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self._level = event.value
            self._placeholders()
            self._show_error("")

    @on(Input.Changed)
    def _edited(self) -> None:
        self._show_error("")

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            request = self.request()
        except LabError as exc:
            self._show_error(str(exc))
            return
        self.dismiss(request)

    def request(self) -> JobRequest:
        """Validate the form: the CLI's own checks; raises ConfigError with one line."""
        from lab.errors import ConfigError
        from tui.jobs import build_job_config

        options: dict[str, Any] = {}
        for input_id, _label, field, kind in FIELDS:
            raw = self.query_one(f"#{input_id}", Input).value.strip()
            if not raw:
                continue
            try:
                options[field] = int(raw) if kind == "integer" else \
                    float(raw) if kind == "number" else raw
            except ValueError:
                raise ConfigError(f"{field}={raw!r}: expected a "
                                  f"{'whole number' if kind == 'integer' else 'number'}") \
                    from None
        raw_priority = self.query_one("#priority", Input).value.strip() or "0"
        try:
            priority = int(raw_priority)
        except ValueError:
            raise ConfigError(f"priority={raw_priority!r}: expected a whole number") from None
        from lab.queue import MAX_PRIORITY

        if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise ConfigError(f"priority={priority}: must be between {-MAX_PRIORITY} and "
                              f"{MAX_PRIORITY}")
        return JobRequest(build_job_config(self._level, options), priority)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#job-error", Static)
        error.update(Text(f"✗ {message}", style="bold red") if message else "")
        error.display = bool(message)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y/enter says yes, n/escape says no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self._question, self._yes, self._no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Static(self._question, id="confirm-question")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="primary", id="yes")
                yield Button(f"{self._no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

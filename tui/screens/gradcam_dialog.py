"""Ask which Grad-CAM gallery to make for a finished run: method, images per class, mistakes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from lab.shapes import ascii_int

METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam")


@dataclass(frozen=True)
class GalleryRequest:
    method: str
    n: int
    wrong_only: bool


class GradcamDialog(ModalScreen[GalleryRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "make", "Make")]

    def __init__(self, run_id: str, n: int = 4) -> None:
        super().__init__()
        self._run_id, self._n = run_id, n

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Grad-CAM gallery", "bold"), f" for {self._run_id}"))
            with Grid(id="job-form"):
                yield Label("method")
                yield Select([(m, m) for m in METHODS], value="gradcam", allow_blank=False,
                             compact=True, id="method")
                yield Label("per class")
                yield Input(str(self._n), type="integer", compact=True, id="n")
                yield Label("mistakes")
                yield Checkbox("only the wrong predictions", compact=True, id="wrong")
            yield Static(id="job-error")
            yield Static(Text("runs here, from the run's checkpoint; enter or ctrl+s makes it",
                              style="dim"))
            with Horizontal(id="dialog-buttons"):
                yield Button("Make", variant="primary", id="make")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#n", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#make")
    def action_make(self) -> None:
        raw = self.query_one("#n", Input).value.strip()
        error = self.query_one("#job-error", Static)
        count = ascii_int(raw)
        if count is None or not 1 <= count <= 1000:
            error.update(Text(f"✗ per class={raw!r}: must be between 1 and 1000",
                              style="bold red"))
            return
        method = self.query_one("#method", Select).value
        self.dismiss(GalleryRequest(str(method), count, self.query_one("#wrong",
                                                                       Checkbox).value))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

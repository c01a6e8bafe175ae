"""One Grad-CAM picture full screen, at its own aspect, with its caption: true class,
prediction, confidence, gallery and target layer. ← → (or n p) walk the others; escape goes back
to the tab, which then shows the picture last seen here."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from tui.widgets.fitted_image import FittedImage, Picture


class GradcamFullScreen(Screen[int]):
    """Dismissed with the index of the picture shown last."""

    DEFAULT_CSS = """
    GradcamFullScreen { padding: 0 1; }
    GradcamFullScreen #full-title { height: 1; background: $panel; }
    GradcamFullScreen #full-image { width: 1fr; height: 1fr; align: center middle; }
    GradcamFullScreen #full-caption { height: auto; max-height: 6; }
    """
    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("right,down,n,j", "step(1)", "next", key_display="→"),
        Binding("left,up,p,k", "step(-1)", "previous", key_display="←"),
    ]

    def __init__(self, entries: list[Picture], index: int) -> None:
        super().__init__()
        self.entries, self.index = entries, index

    def compose(self) -> ComposeResult:
        yield Static(id="full-title")
        yield FittedImage(id="full-image")
        yield Static(id="full-caption")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        entry = self.entries[self.index]
        caption = entry.caption
        try:
            self.query_one(FittedImage).show(entry.path)
        except OSError as exc:  # listed in the index, but missing or broken
            self.query_one(FittedImage).show(None)
            caption = f"! cannot read {entry.path.name}: {exc}"
        self.query_one("#full-title", Static).update(Text.assemble(
            ("Grad-CAM ", "bold"), f"{self.index + 1}/{len(self.entries)}",
            ("   ← → previous/next   escape back", "dim")))
        self.query_one("#full-caption", Static).update(caption)

    def action_step(self, delta: int) -> None:
        self.index = (self.index + delta) % len(self.entries)
        self._show()

    def action_back(self) -> None:
        self.dismiss(self.index)

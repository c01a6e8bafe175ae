"""Grad-CAM heatmaps of a run: the gallery's items as a list, the chosen PNG drawn beside it,
and `enter` (or `f` on the main screen) for one picture full screen (`tui.screens.gradcam_full`).

Drawing uses textual-image (the renderer `lab gradcam show` uses): Kitty graphics or Sixel where
the terminal answers that it supports them, coloured half cells otherwise. The terminal is asked
before the app starts (`tui.graphics`); textual-image itself is imported when a picture is first
drawn. Pictures keep their aspect (`FittedImage`).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from lab.explain.index import layer_text
from tui.detail import RunDetail
from tui.widgets.fitted_image import FittedImage, Picture


def entries_of(galleries: list[dict[str, Any]]) -> tuple[list[Picture], list[Option]]:
    """The pictures of a run's galleries in list order, and their list lines."""
    entries: list[Picture] = []
    options: list[Option] = []
    for g in galleries:
        on_layer = f"{g['name']}: {g['method']} on {layer_text(g)}"
        if g["grid"] is not None:
            right = sum(1 for i in g["items"] if i.get("correct"))
            entries.append(Picture(g["grid"], f"{on_layer}\n{right} right (green), "
                                    f"{len(g['items']) - right} wrong (red); labels: "
                                    "true>predicted confidence"))
            options.append(Option(Text(f"▦ {g['name']} grid", style="bold")))
        for item in g["items"]:
            ok = item.get("correct")
            entries.append(Picture(item["path"], f"{item.get('caption', '')}\n"
                                    f"test image #{item.get('test_index', '?')} · "
                                    f"{'right' if ok else 'WRONG'} · {on_layer}"))
            options.append(Option(Text.assemble(("✓ " if ok else "✗ ", "green" if ok else "red"),
                                                str(item.get("caption", item.get("file"))))))
    return entries, options


class GradcamView(Horizontal):
    """Owns the Grad-CAM tab: reactive `detail` in, list and picture out."""

    DEFAULT_CSS = """
    GradcamView { height: 1fr; }
    GradcamView > OptionList { width: 26; height: 1fr; }
    GradcamView > Vertical { width: 1fr; height: 1fr; padding: 0 1; }
    GradcamView #cam-caption { height: auto; max-height: 5; }
    GradcamView #cam-empty { height: auto; color: $text-muted; }
    Screen.-narrow GradcamView { layout: vertical; }
    Screen.-narrow GradcamView > OptionList { width: 1fr; height: 5; }
    Screen.-narrow GradcamView > Vertical { padding: 0; }
    """
    SCOPED_CSS = False  # the narrow layout hangs on the screen's breakpoint class

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)
    busy: reactive[str] = reactive("")  # "generating ..." while a gallery is being made

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signature: tuple = ()
        self.entries: list[Picture] = []
        self.shown: int | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="cam-list")
        with Vertical():
            yield Static(id="cam-empty")
            yield FittedImage(id="cam-image")
            yield Static(id="cam-caption")

    def watch_detail(self) -> None:
        d = self.detail
        galleries = d.galleries if d else []
        signature = (d.run_id if d else None,
                     tuple((g["name"], len(g["items"]), str(g["grid"])) for g in galleries))
        if signature == self._signature:
            return
        self._signature = signature
        self.entries, options = entries_of(galleries)
        cams = self.query_one(OptionList)
        cams.clear_options()
        cams.add_options(options)
        self._show(0 if self.entries else None)

    def watch_busy(self) -> None:
        self._show_empty()

    def _show_empty(self) -> None:
        empty = self.query_one("#cam-empty", Static)
        d = self.detail
        if self.busy:
            empty.update(Text(self.busy, style="bold yellow"))
        elif d is None:
            empty.update("select a run")
        elif not self.entries:
            text = "no Grad-CAM gallery yet"
            if d.state == "done":
                text += ": press g to make one from the run's checkpoint"
            empty.update(text)
        empty.display = bool(self.busy) or not self.entries

    def _show(self, index: int | None) -> None:
        picture = self.query_one("#cam-image", FittedImage)
        caption = self.query_one("#cam-caption", Static)
        self._show_empty()
        if index is None or not 0 <= index < len(self.entries):
            self.shown = None
            picture.show(None)
            caption.update("")
            return
        self.shown = index
        entry = self.entries[index]
        text = entry.caption
        try:
            picture.show(entry.path)
        except OSError as exc:  # a PNG named in the index but missing or broken
            picture.show(None)
            text = f"! cannot read {entry.path.name}: {exc}"
        caption.update(text)
        cams = self.query_one(OptionList)
        if cams.highlighted != index:
            cams.highlighted = index

    def action_full(self) -> None:
        """The chosen picture full screen; the list follows what was last shown there."""
        if self.shown is None:
            self.notify("no Grad-CAM picture to show", severity="warning")
            return
        from tui.screens.gradcam_full import GradcamFullScreen

        self.app.push_screen(GradcamFullScreen(self.entries, self.shown),
                             lambda last: self._show(last) if last is not None else None)

    @on(OptionList.OptionHighlighted, "#cam-list")
    def _pick(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._show(event.option_index)

    @on(OptionList.OptionSelected, "#cam-list")
    def _open(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._show(event.option_index)
        self.action_full()

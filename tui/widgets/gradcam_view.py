"""Grad-CAM heatmaps of a run: the gallery's items as a list, the chosen PNG drawn beside it.

Drawing uses textual-image (the renderer `lab gradcam show` uses): Kitty graphics or Sixel where
the terminal answers that it supports them, coloured half cells otherwise. textual-image asks the
terminal while it is imported, which only works before the app starts, so this module is imported
before `App.run` (tui.app imports it at start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual_image.widget import Image

from tui.detail import RunDetail


class GradcamView(Horizontal):
    """Owns the Grad-CAM tab: reactive `detail` in, list and picture out."""

    DEFAULT_CSS = """
    GradcamView { height: 1fr; }
    GradcamView > OptionList { width: 26; height: 1fr; }
    GradcamView > Vertical { width: 1fr; height: 1fr; padding: 0 1; }
    GradcamView Image { width: auto; height: 1fr; max-height: 24; }
    GradcamView #cam-caption { height: auto; max-height: 5; }
    GradcamView #cam-empty { height: auto; color: $text-muted; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)
    busy: reactive[str] = reactive("")  # "generating ..." while a gallery is being made

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signature: tuple = ()
        self._entries: list[tuple[Path, str]] = []

    def compose(self) -> ComposeResult:
        yield OptionList(id="cam-list")
        with Vertical():
            yield Static(id="cam-empty")
            yield Image(id="cam-image")
            yield Static(id="cam-caption")

    def watch_detail(self) -> None:
        d = self.detail
        galleries = d.galleries if d else []
        signature = (d.run_id if d else None,
                     tuple((g["name"], len(g["items"]), str(g["grid"])) for g in galleries))
        if signature == self._signature:
            return
        self._signature = signature
        self._entries = []
        options: list[Option] = []
        for g in galleries:
            if g["grid"] is not None:
                right = sum(1 for i in g["items"] if i.get("correct"))
                self._entries.append((g["grid"], f"{g['name']}: {g['method']} on {g['layer']}\n"
                                      f"{right} right (green), {len(g['items']) - right} wrong "
                                      "(red); labels: true>predicted confidence"))
                options.append(Option(Text(f"▦ {g['name']} grid", style="bold")))
            for item in g["items"]:
                ok = item.get("correct")
                self._entries.append((item["path"], f"{item.get('caption', '')}\n"
                                      f"test image #{item.get('test_index', '?')} · "
                                      f"{'right' if ok else 'WRONG'} · {g['name']}"))
                options.append(Option(Text.assemble(("✓ " if ok else "✗ ",
                                                     "green" if ok else "red"),
                                                    str(item.get("caption", item.get("file"))))))
        cams = self.query_one(OptionList)
        cams.clear_options()
        cams.add_options(options)
        self._show(0 if self._entries else None)

    def watch_busy(self) -> None:
        self._show_empty()

    def _show_empty(self) -> None:
        empty = self.query_one("#cam-empty", Static)
        d = self.detail
        if self.busy:
            empty.update(Text(self.busy, style="bold yellow"))
        elif d is None:
            empty.update("select a run")
        elif not self._entries:
            text = "no Grad-CAM gallery yet"
            if d.state == "done":
                text += ": press g to make one from the run's checkpoint"
            empty.update(text)
        empty.display = bool(self.busy) or not self._entries

    def _show(self, index: int | None) -> None:
        image = self.query_one("#cam-image", Image)
        caption = self.query_one("#cam-caption", Static)
        self._show_empty()
        if index is None or not 0 <= index < len(self._entries):
            image.image = None
            image.display = False
            caption.update("")
            return
        path, text = self._entries[index]
        image.display = True
        try:
            image.image = str(path)
        except OSError as exc:  # a PNG named in the index but missing or broken
            image.image = None
            text = f"! cannot read {path.name}: {exc}"
        caption.update(text)
        cams = self.query_one(OptionList)
        if cams.highlighted != index:
            cams.highlighted = index

    @on(OptionList.OptionHighlighted, "#cam-list")
    def _pick(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._show(event.option_index)

"""A picture that keeps its shape: it takes the largest cell size its box allows at the image's
own aspect (`lab.views.cells.fit_cells`), and refits when the box changes size.

textual-image sizes its widget from CSS and the terminal's reported cell pixels: `width: auto;
height: 1fr` filled the box on both sides and stretched the image. Here the image widget gets
explicit cell counts on both sides, so every renderer (half blocks, Sixel, Kitty) draws the same
shape.

The image widget (textual-image, with numpy and PIL) is made when a picture first has a box on
screen: a Grad-CAM tab that is never opened costs nothing at start (`tui.graphics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.containers import Container
from textual.widget import Widget

from lab.views.cells import fit_cells
from tui.graphics import image_class


@dataclass(frozen=True)
class Picture:
    """A PNG to draw and what to say under it (a Grad-CAM grid or example)."""

    path: Path
    caption: str


class FittedImage(Container):
    """Owns one picture: `show(path)` in, an image widget sized to fit out."""

    DEFAULT_CSS = """
    FittedImage { width: 1fr; height: 1fr; }
    FittedImage > * { width: 1; height: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._path: Path | None = None
        self._pixels: tuple[int, int] = (0, 0)
        self._image: Widget | None = None  # textual-image's, made on the first drawing

    @property
    def image(self) -> Widget | None:
        return self._image

    @property
    def cells(self) -> tuple[int, int]:
        """(cols, rows) the picture takes now."""
        if self._image is None or not self._image.display:
            return 0, 0
        return self._image.size.width, self._image.size.height

    def show(self, path: Path | None) -> None:
        """Draw the PNG at `path` (None: nothing); an unreadable file raises OSError and
        leaves the widget empty."""
        self._path, self._pixels = None, (0, 0)
        if self._image is not None:
            self._image.image = None
            self._image.display = False
        if path is None:
            return
        from PIL import Image as PILImage

        with PILImage.open(path) as probe:  # the header only: its size
            size = probe.size
        self._path, self._pixels = path, size
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        box = self.content_size
        cols, rows = fit_cells(*self._pixels, box.width, box.height)
        if (cols, rows) == (0, 0) or self._path is None:
            if self._image is not None:
                self._image.display = False
            return
        if self._image is None:
            self._image = image_class()()
            self.mount(self._image)
        image = self._image
        if image.image != str(self._path):
            image.image = str(self._path)
        image.display = True
        image.styles.width, image.styles.height = cols, rows

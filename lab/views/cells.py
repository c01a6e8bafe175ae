"""How many terminal cells a picture takes: the one sizing rule of every image renderer (the
console's Grad-CAM tab and full view, `lab gradcam show`, half blocks, Sixel or Kitty).

Renderers left to size an image themselves stretch it: a cell count given for one side while
the other comes from the image's pixel height, or a box filled on both sides. A cell is about
twice as tall as it is wide, so an image w×h pixels keeps its shape in `cols` × `rows` cells
when cols : (2 · rows) ≈ w : h.
"""

from __future__ import annotations

CELL_ASPECT = 2.0  # a terminal cell's height over its width (8×16, 9×18, 10×20 pixels...)


def fit_cells(pixel_width: int, pixel_height: int, max_cols: int, max_rows: int,
              cell_aspect: float = CELL_ASPECT) -> tuple[int, int]:
    """The largest (cols, rows) within max_cols × max_rows that shows the image at its own
    aspect (to the nearest cell); (0, 0) for an empty image or box."""
    if min(pixel_width, pixel_height, max_cols, max_rows) <= 0:
        return 0, 0
    aspect = pixel_width * cell_aspect / pixel_height  # columns per row
    cols = round(max_rows * aspect)
    if cols <= max_cols:
        return max(1, cols), max_rows
    return max_cols, min(max_rows, max(1, round(max_cols / aspect)))

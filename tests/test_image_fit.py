"""Pictures keep their shape in the terminal: one sizing rule (`fit_cells`), honoured by every
renderer textual-image has, in `lab gradcam show` and in the console (tests/test_tui_gradcam.py).

A terminal cell is about twice as tall as wide, so a w×h picture drawn in cols × rows cells
keeps its shape when cols : (2 · rows) ≈ w : h. Rounding to whole cells allows half a cell of
error on the side that is not at its box's limit.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console
from rich.segment import Segment
from textual_image import renderable

from lab.views.cells import fit_cells
from tests.gradcam_data import write_picture_gallery
from tests.tui_runs import write_run

RENDERERS = {"halfcell": renderable.HalfcellImage, "unicode": renderable.UnicodeImage,
             "sixel": renderable.SixelImage, "kitty": renderable.TGPImage}


def assert_keeps_shape(pixels: tuple[int, int], box: tuple[int, int],
                       cells: tuple[int, int]) -> None:
    """Inside the box, touching it on one side, and of the picture's aspect to within the
    rounding of the other side (the shorter side when a side had to be 1 cell)."""
    (w, h), (max_cols, max_rows), (cols, rows) = pixels, box, cells
    assert 1 <= cols <= max_cols and 1 <= rows <= max_rows, (pixels, box, cells)
    assert cols == max_cols or rows == max_rows, "a smaller picture than the box allows"
    want = w / h
    shown = cols / (2 * rows)
    rows_limit = rows == max_rows and abs(2 * want * rows - cols) <= 0.5 + 1e-9
    cols_limit = cols == max_cols and abs(cols / (2 * want) - rows) <= 0.5 + 1e-9
    one_cell = (cols == 1 and 2 * want * rows < 1) or (rows == 1 and cols / (2 * want) < 1)
    assert rows_limit or cols_limit or one_cell, (pixels, box, cells, shown, want)
    if min(cols, rows) >= 8:
        assert abs(shown / want - 1) <= 0.07, (pixels, box, cells, shown, want)


@pytest.mark.parametrize("pixels, box, cells", [
    ((262, 150), (34, 22), (34, 10)),  # the tab: 34×22 cells were filled, tall and thin
    ((262, 150), (56, 38), (56, 16)),  # the issue's `lab gradcam show` at 100×40: was 56×5
    ((262, 150), (80, 24), (80, 23)),
    ((960, 670), (41, 11), (32, 11)),  # a gallery grid in the 80×24 tab: rows are the limit
    ((150, 262), (80, 24), (27, 24)),  # tall pictures too
    ((64, 64), (10, 40), (10, 5)),
    ((1000, 10), (80, 24), (80, 1)),  # as flat as a cell allows
    ((10, 1000), (80, 24), (1, 24)),
])
def test_fit_cells_examples(pixels: tuple[int, int], box: tuple[int, int],
                            cells: tuple[int, int]) -> None:
    assert fit_cells(*pixels, *box) == cells
    assert_keeps_shape(pixels, box, cells)


@pytest.mark.parametrize("pixels, box", [((0, 10), (10, 10)), ((10, 10), (0, 5)),
                                         ((10, 10), (5, 0))])
def test_nothing_to_draw_is_no_cells(pixels: tuple[int, int], box: tuple[int, int]) -> None:
    assert fit_cells(*pixels, *box) == (0, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 400), st.integers(1, 200))
def test_fit_cells_keeps_the_aspect_inside_any_box(w: int, h: int, max_cols: int,
                                                   max_rows: int) -> None:
    assert_keeps_shape((w, h), (max_cols, max_rows), fit_cells(w, h, max_cols, max_rows))


def rendered_cells(picture: object, width: int) -> tuple[int, int]:
    """(cols, rows) a Rich renderable takes on a terminal `width` wide."""
    console = Console(width=width, height=200, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    lines = [sum(s.cell_length for s in line if not s.control)
             for line in Segment.split_lines(console.render(picture, console.options))]
    lines = [n for n in lines if n]  # Sixel's data line takes no cells
    return (max(lines) if lines else 0), len(lines)


@pytest.mark.parametrize("mode", RENDERERS)
@pytest.mark.parametrize("pixels, box", [((262, 150), (56, 38)), ((960, 670), (41, 11)),
                                         ((150, 262), (30, 40)), ((33, 33), (100, 9))])
def test_every_renderer_draws_the_fitted_size(mode: str, pixels: tuple[int, int],
                                              box: tuple[int, int]) -> None:
    cols, rows = fit_cells(*pixels, *box)
    picture = RENDERERS[mode](Image.new("RGB", pixels, (200, 40, 40)), width=cols, height=rows)
    drawn = rendered_cells(picture, width=box[0] + 10)
    assert drawn == (cols, rows)
    assert_keeps_shape(pixels, box, drawn)


def lab(*args: str, columns: int, lines: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "LINES": str(lines)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def gallery_run(lab_dirs: dict[str, Path]) -> tuple[Path, str, dict]:
    run = write_run(lab_dirs["runs"], "20250301-100000-l3-0c03", 3)
    return lab_dirs["runs"], run.id, write_picture_gallery(run.path, ["cat", "dog", "owl"])


@pytest.mark.slow
@pytest.mark.parametrize("columns, lines", [(100, 40), (80, 24), (200, 60), (120, 12)])
def test_gradcam_show_keeps_the_aspect(gallery_run: tuple[Path, str, dict], columns: int,
                                       lines: int) -> None:
    """`lab gradcam show RUN FILE` in a terminal of COLUMNS × LINES, half-cell mode: the
    picture's rows are the lines with half blocks, its columns the blocks on each."""
    runs, run_id, gallery = gallery_run
    for name, pixels in ((gallery["items"][0]["file"], (262, 150)), (None, None)):
        args = [name] if name else []
        proc = lab("gradcam", "show", run_id, *args, "--mode", "halfcell", "--runs-dir",
                   str(runs), columns=columns, lines=lines)
        assert proc.returncode == 0, proc.stderr
        drawn = [line.count("▀") for line in proc.stdout.splitlines() if "▀" in line]
        cols, rows = max(drawn), len(drawn)
        if pixels is None:
            pixels = Image.open(runs / run_id / "gradcam" / "gradcam" / "grid.png").size
        box_cols = max(20, min(columns - 44, 64 if name else 100))
        assert_keeps_shape(pixels, (box_cols, max(4, lines - 2)), (cols, rows))
        assert "true cat, pred cat" in proc.stdout if name else "right (green)" in proc.stdout
        assert "features.1 (8×8)" in proc.stdout  # the layer the gallery was made on


@pytest.mark.slow
def test_gradcam_show_width_and_bad_input(gallery_run: tuple[Path, str, dict]) -> None:
    runs, run_id, gallery = gallery_run
    proc = lab("gradcam", "show", run_id, gallery["items"][1]["file"], "--mode", "halfcell",
               "--width", "30", "--runs-dir", str(runs), columns=100, lines=40)
    drawn = [line.count("▀") for line in proc.stdout.splitlines() if "▀" in line]
    assert (max(drawn), len(drawn)) == fit_cells(262, 150, 30, 10**6) == (30, 9)
    for args, message in ((["--width", "0"], "--width 0"),
                          (["nope.png"], f"lab gradcam show {run_id}` shows the grid")):
        bad = lab("gradcam", "show", run_id, *args, "--runs-dir", str(runs), columns=100,
                  lines=40)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr
        assert not re.search(r"\bRUN\b", bad.stderr)  # the real id, never a placeholder

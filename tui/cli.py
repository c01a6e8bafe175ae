"""The Typer commands the `tui` package adds to the `lab` CLI: `lab tui` and `lab gradcam show`.

Both draw in the terminal with Textual or textual-image, so they live here rather than in `lab/`,
which stays headless. `tui.commands.register` (the `lab.commands` entry point) adds them to the
tree; this module imports only Typer and the CLI's shared options at load time, so `lab --help`
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli.common import DataDirOpt, RunsDirOpt, data_dir, out, runs_dir

MODES = ("auto", "kitty", "sixel", "halfcell", "unicode")
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")]


def tui(
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
    screenshot: Annotated[Path | None, typer.Option(
        "--screenshot", help="Render headless and save an SVG of the screen here, then exit.",
        show_default=False)] = None,
    size: Annotated[str, typer.Option(help="Screenshot size, COLUMNSxROWS.")] = "120x40",
    press: Annotated[str, typer.Option(
        help="Screenshot: keys to press first, comma-separated (e.g. 'down,space,down,space,7')."
    )] = "",
    theme: Annotated[str | None, typer.Option(
        help="Textual theme, e.g. textual-dark or textual-light.", show_default=False)] = None,
) -> None:
    """The lab console: jobs and runs, live curves, compare, new jobs, Grad-CAM (keyboard only;
    quitting it leaves every job and worker running)."""
    from lab.errors import ConfigError

    runs_path, data_path = runs_dir(runs), data_dir(data)
    if screenshot is not None:
        try:
            cols, rows = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {size!r}: expected COLUMNSxROWS, e.g. 120x40") from None
        if not (20 <= cols <= 1000 and 10 <= rows <= 1000):
            raise ConfigError(f"--size {size!r}: between 20x10 and 1000x1000")
        from tui.screenshot import screenshot as shoot

        keys = [k.strip() for k in press.split(",") if k.strip()]
        written = shoot(runs_path, data_path, screenshot, (cols, rows), keys, theme=theme)
        out.print(f"screenshot: {written}")
        return
    from tui.start import run_console

    code = run_console(runs_path, data_path, theme)
    if code:  # 130 after SIGTERM or SIGHUP
        raise typer.Exit(code)


def show(
    run_ref: RunArg,
    file: Annotated[str | None, typer.Argument(help="A PNG of the gallery (default: its grid).",
                                               show_default=False)] = None,
    gallery: Annotated[str | None, typer.Option(help="Gallery name (default: the newest).",
                                                show_default=False)] = None,
    mode: Annotated[str, typer.Option(help="auto | kitty | sixel | halfcell | unicode.")] = "auto",
    width: Annotated[int | None, typer.Option(help="Image width in terminal cells.",
                                              show_default=False)] = None,
    runs: RunsDirOpt = None,
) -> None:
    """Draw a saved heatmap in the terminal, its caption beside it."""
    from lab.errors import ConfigError
    from lab.runs import resolve_run

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose {', '.join(MODES)}")
    if width is not None and not 1 <= width <= 1000:
        raise ConfigError(f"--width {width}: must be between 1 and 1000")
    run = resolve_run(runs_dir(runs), run_ref)
    path, caption = _locate(run.path / "gradcam", gallery, file)
    draw_picture(path, caption, mode=mode, width=width, grid="grid" in path.name)


def draw_picture(path: Path, caption: str, *, mode: str = "auto", width: int | None = None,
                 grid: bool = False) -> None:
    """A PNG drawn in the terminal with its caption beside it (`lab gradcam show`, and
    `lab predict --show` through `lab.cli.plugins.picture_drawer`)."""
    from PIL import Image as PILImage
    from rich.table import Table
    from rich.text import Text

    with PILImage.open(path) as opened:
        picture = opened.convert("RGB")
    cols, rows = _cells(picture.size, width, grid=grid)
    renderable = _image_class(mode)(picture, width=cols, height=rows)
    layout = Table.grid(padding=(0, 2))
    layout.add_column()
    layout.add_column(max_width=40)
    layout.add_row(renderable, Text(caption))
    out.print(layout)


def _locate(gradcam_dir: Path, gallery: str | None, file: str | None) -> tuple[Path, str]:
    """The PNG to show and its caption; only files listed in a gallery index can be named."""
    from lab.errors import NotFoundError
    from lab.explain.index import layer_text, read_galleries, read_gallery

    galleries = read_galleries(gradcam_dir)  # indexes checked against their shapes
    if not galleries:
        raise NotFoundError(f"{gradcam_dir.parent.name} has no Grad-CAM gallery",
                            hint=f"make one with `lab gradcam {gradcam_dir.parent.name}`")
    if gallery is not None:
        galleries = [g for g in galleries if g["name"] == gallery]
        if not galleries:
            raise NotFoundError(f"no gallery {gallery!r} in this run")
    for entry in galleries:
        index = read_gallery(gradcam_dir, entry["name"])
        if index is None:
            continue
        header = f"{entry['name']}: {index.get('method')} on {layer_text(index)}"
        if file is None:
            if not index.get("grid"):
                raise NotFoundError(f"gallery {entry['name']!r} is empty")
            right = sum(1 for i in index["items"] if i["correct"])
            text = (f"{header}\n{right} right (green), {len(index['items']) - right} wrong (red)"
                    "\nlabels: true>predicted confidence")
            return gradcam_dir / entry["name"] / index["grid"], text
        name = Path(file).name
        for item in index["items"]:
            if item["file"] == name:
                text = (f"{header}\n{item['caption']}\ntest image #{item['test_index']}\n"
                        f"{'right' if item['correct'] else 'WRONG'}")
                return gradcam_dir / entry["name"] / item["file"], text
    raise NotFoundError(f"no image {file!r} in the gallery index",
                        hint=f"`lab gradcam show {gradcam_dir.parent.name}` shows the grid; "
                             "its files are in the index")


def _image_class(mode: str) -> Any:
    from textual_image import renderable

    return {"auto": renderable.Image, "kitty": renderable.TGPImage,
            "sixel": renderable.SixelImage, "halfcell": renderable.HalfcellImage,
            "unicode": renderable.UnicodeImage}[mode]


def _cells(pixels: tuple[int, int], width: int | None, grid: bool) -> tuple[int, int]:
    """The picture's cells at its own aspect: `--width` wide, or as large as the terminal
    allows beside the caption (COLUMNS × LINES where there is no terminal)."""
    from lab.views.cells import fit_cells

    if width is not None:
        return fit_cells(*pixels, width, 10**6)
    columns, lines = out.size
    box = max(20, min(columns - 44, 100 if grid else 64))  # the caption takes 40 and a gap
    return fit_cells(*pixels, box, max(4, lines - 2))

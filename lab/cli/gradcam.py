"""`lab gradcam RUN ...` makes a gallery; `lab gradcam show RUN [FILE]` draws one in the terminal.

Drawing uses textual-image's Rich renderables: Kitty graphics or Sixel when the terminal answers
that it supports them, coloured half-cell blocks otherwise (what a plain SSH session gets), and
plain Unicode shading when the output is not a terminal at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lab.cli.common import DataDirOpt, JsonOpt, RunsDirOpt, data_dir, out, print_json, runs_dir

MODES = ("auto", "kitty", "sixel", "halfcell", "unicode")


class _DefaultToMake(TyperGroup):
    """`lab gradcam RUN` means `lab gradcam make RUN`; `show` and `make` are the subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["make", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DefaultToMake, no_args_is_help=True,
                  help="Grad-CAM galleries: make one (`lab gradcam RUN`) or show one.")

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")]
MethodOpt = Annotated[str, typer.Option(help="gradcam | gradcam++ | scorecam | eigencam.")]


@app.command()
def make(
    run_ref: RunArg,
    class_name: Annotated[str | None, typer.Option("--class", help="Only this true class.",
                                                   show_default=False)] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="Only misclassified images.")] = False,
    n: Annotated[int, typer.Option("--n", help="Images per class and kind (right/wrong).")] = 2,
    method: MethodOpt = "gradcam",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Make (or remake) a gallery from a finished run's checkpoint."""
    from lab.explain import explain_run
    from lab.runs import resolve_run

    run = resolve_run(runs_dir(runs), run_ref)
    gallery = explain_run(run, data_dir(data), n=n, method=method, class_name=class_name,
                          wrong_only=wrong, device=device)
    if json_out:
        print_json(gallery)
        return
    folder = run.path / "gradcam" / gallery["name"]
    right = sum(1 for item in gallery["items"] if item["correct"])
    out.print(f"gallery [bold]{gallery['name']}[/] ({gallery['method']} on {gallery['layer']}): "
              f"{right} right, {len(gallery['items']) - right} wrong in {folder}")
    out.print(f"see it with: lab gradcam show {run.id} --gallery {gallery['name']}")


@app.command()
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
    from PIL import Image as PILImage
    from rich.table import Table
    from rich.text import Text

    from lab.errors import ConfigError
    from lab.runs import resolve_run

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose {', '.join(MODES)}")
    run = resolve_run(runs_dir(runs), run_ref)
    path, caption = _locate(run.path / "gradcam", gallery, file)
    renderable = _image_class(mode)(PILImage.open(path), width=width or _default_width(path))
    layout = Table.grid(padding=(0, 2))
    layout.add_column()
    layout.add_column(max_width=40)
    layout.add_row(renderable, Text(caption))
    out.print(layout)


def _locate(gradcam_dir: Path, gallery: str | None, file: str | None) -> tuple[Path, str]:
    """The PNG to show and its caption; only files listed in a gallery index can be named."""
    from lab.errors import NotFoundError
    from lab.gradcam import read_galleries
    from lab.runs import read_json

    galleries = read_galleries(gradcam_dir)
    if not galleries:
        raise NotFoundError(f"{gradcam_dir.parent.name} has no Grad-CAM gallery",
                            hint=f"make one with `lab gradcam {gradcam_dir.parent.name}`")
    if gallery is not None:
        galleries = [g for g in galleries if g["name"] == gallery]
        if not galleries:
            raise NotFoundError(f"no gallery {gallery!r} in this run")
    for entry in galleries:
        index = read_json(gradcam_dir / entry["name"] / "index.json") or {}
        header = f"{entry['name']}: {index.get('method')} on {index.get('layer')}"
        if file is None:
            if not index.get("grid"):
                raise NotFoundError(f"gallery {entry['name']!r} is empty")
            right = sum(1 for i in index["items"] if i["correct"])
            text = (f"{header}\n{right} right (green), {len(index['items']) - right} wrong (red)"
                    "\nlabels: true>predicted confidence")
            return gradcam_dir / entry["name"] / index["grid"], text
        name = Path(file).name
        for item in index.get("items", []):
            if item["file"] == name:
                text = (f"{header}\n{item['caption']}\ntest image #{item['test_index']}\n"
                        f"{'right' if item['correct'] else 'WRONG'}")
                return gradcam_dir / entry["name"] / item["file"], text
    raise NotFoundError(f"no image {file!r} in the gallery index",
                        hint="`lab gradcam show RUN` shows the grid; its files are in the index")


def _image_class(mode: str) -> Any:
    from textual_image import renderable

    return {"auto": renderable.Image, "kitty": renderable.TGPImage,
            "sixel": renderable.SixelImage, "halfcell": renderable.HalfcellImage,
            "unicode": renderable.UnicodeImage}[mode]


def _default_width(path: Path) -> int:
    columns = out.width
    return max(20, min(columns - 44, 100 if "grid" in path.name else 64))

"""`lab gradcam RUN ...` makes a gallery from a finished run's weights (`--weights`).

`lab gradcam show` (drawing in the terminal) belongs to the `tui` package, which registers it
on this group: terminal graphics stay out of `lab/` (see `tui/commands.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lab.cli.common import DataDirOpt, JsonOpt, RunsDirOpt, data_dir, out, print_json, runs_dir


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
    layer: Annotated[str | None, typer.Option(
        help="Target layer (features.N for the custom CNN, layerN for ResNet18; default: the "
             "deepest whose map is still about 7×7 at the run's input size).",
        show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    weights: Annotated[str, typer.Option(
        help="last (the final checkpoint) | best (best.pt: the best validation epoch).")
    ] = "last",
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Make (or remake) a gallery from a finished run's last or best weights."""
    from lab.explain.gallery import explain_run
    from lab.explain.index import layer_text
    from lab.runs import resolve_run

    run = resolve_run(runs_dir(runs), run_ref)
    gallery = explain_run(run, data_dir(data), n=n, method=method, class_name=class_name,
                          wrong_only=wrong, device=device, layer=layer, weights=weights)
    if json_out:
        print_json(gallery)
        return
    folder = run.path / "gradcam" / gallery["name"]
    right = sum(1 for item in gallery["items"] if item["correct"])
    out.print(f"gallery [bold]{gallery['name']}[/] ({gallery['method']} on "
              f"{layer_text(gallery)}): {right} right, {len(gallery['items']) - right} wrong "
              f"in {folder}")
    out.print(f"see it with: lab gradcam show {run.id} --gallery {gallery['name']}")

"""`lab predict RUN IMAGE|DIR|ARCHIVE ...`: a finished run's answers about new images.

Answers go to stdout (a table, `--json` or `--csv`); each file that could not be read is one
line on stderr and the others are predicted. The exit code is non-zero only when nothing could
be predicted (or the run, a path or an option is wrong).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli.common import DataDirOpt, JsonOpt, RunsDirOpt, data_dir, err, out, pct, runs_dir


def predict(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")],
    paths: Annotated[list[Path], typer.Argument(
        metavar="IMAGE|DIR|ARCHIVE...", help="Images, folders (recursive) or .zip/.tar.* "
        "archives; a folder of <class>/ or train|val|test/<class>/ folders is also scored.",
        show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per image.")] = 3,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV rows instead of tables.")
                       ] = False,
    gradcam: Annotated[bool, typer.Option(
        "--gradcam", help="Write one Grad-CAM heatmap PNG per image into --out.")] = False,
    show: Annotated[bool, typer.Option(
        "--show", help="Draw each heatmap in the terminal (implies --gradcam).")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the heatmaps (default: predictions/RUN_ID).",
        show_default=False)] = None,
    tta: Annotated[bool | None, typer.Option(
        "--tta/--no-tta", help="Average each image with its mirror (default: as the run's "
        "test; never where the run's data is not mirror-safe).", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="last | best.")] = "last",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Top-k classes with probabilities for each image, as the run's test saw its images."""
    from lab.data.sources import check_inputs
    from lab.errors import ConfigError, DataError
    from lab.explain.predict import predict_paths
    from lab.explain.trained import load_trained
    from lab.runs import resolve_run

    if json_out and csv_out:
        raise ConfigError("--json and --csv: choose one")
    drawer = None
    if show:
        from lab.cli.plugins import picture_drawer

        drawer = picture_drawer()
        if drawer is None:
            raise ConfigError("--show needs the console package (tui) to draw in the terminal",
                              hint="install lab with its console, or drop --show")
    run = resolve_run(runs_dir(runs), run_ref)
    check_inputs(paths)  # a typo is told before the model is built
    trained = load_trained(run, weights, device, data_dir=data_dir(data))
    heatmaps = None
    if gradcam or show:
        heatmaps = out_dir if out_dir is not None else Path("predictions") / run.id

    def failed(name: str, why: str) -> None:
        err.print(f"lab: skipped {name}: {why}", markup=False, soft_wrap=True)

    def noted(text: str) -> None:
        err.print(f"lab: {text}", markup=False, soft_wrap=True)

    report = predict_paths(trained, paths, top_k=top_k, batch_size=batch_size, tta=tta,
                           gradcam_dir=heatmaps, on_error=failed, on_note=noted)
    if not report.predictions:
        what = f"all {len(report.errors)} file(s) failed" if report.errors else "no images found"
        raise DataError(f"nothing could be predicted: {what}")
    if json_out:
        from lab.cli.common import print_json

        print_json(report.to_dict())
    elif csv_out:
        _write_csv(report.predictions, top_k)
    else:
        _print_tables(report, trained.classes)
    if drawer is not None:
        for answer in report.predictions:
            drawer(Path(answer["heatmap"]), _caption(answer))


def _caption(answer: dict[str, Any]) -> str:
    lines = [answer["file"]]
    if "label" in answer:
        lines.append(f"true {answer['label']}")
    lines += [f"{a['class']} {pct(a['probability'], 1)}" for a in answer["top"]]
    return "\n".join(lines)


def _write_csv(predictions: list[dict[str, Any]], top_k: int) -> None:
    k = max(len(a["top"]) for a in predictions)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    header = ["file", "label"]
    for i in range(1, k + 1):
        header += [f"class_{i}", f"probability_{i}"]
    writer.writerow([*header, "heatmap"])
    for answer in predictions:
        row = [answer["file"], answer.get("label", "")]
        for a in answer["top"]:
            row += [a["class"], f"{a['probability']:.6f}"]
        writer.writerow([*row, answer.get("heatmap", "")])
    sys.stdout.flush()


def _print_tables(report: Any, classes: list[str]) -> None:
    from rich.table import Table
    from rich.text import Text

    from lab.cli.render import per_class_table
    from lab.views.states import weakest_classes

    labelled = any("label" in a for a in report.predictions)
    table = Table(title=f"Predictions of run {report.run_id} ({report.weights}, epoch "
                        f"{report.epoch}{', flip TTA' if report.tta else ''})",
                  title_justify="left")
    table.add_column("file", overflow="fold")
    if labelled:
        table.add_column("label")
    k = max(len(a["top"]) for a in report.predictions)
    for i in range(1, k + 1):
        table.add_column(f"#{i}", justify="left")
    for answer in report.predictions:
        cells = [Text(answer["file"])]
        if labelled:
            cells.append(Text(answer.get("label", "")))
        for i, a in enumerate(answer["top"]):
            right = answer.get("label") == a["class"]
            style = "bold" if i == 0 else ""
            if i == 0 and "label" in answer:
                style = "bold green" if right else "bold red"
            cells.append(Text(f"{a['class']} {pct(a['probability'], 1)}", style=style))
        table.add_row(*cells)
    out.print(table)
    summary = report.summary
    if summary is not None:
        out.print(f"accuracy [bold]{pct(summary['accuracy'])}[/] on {summary['images']} "
                  "labelled image(s)")
        out.print(per_class_table(summary["per_class"], weakest_classes(summary["per_class"]),
                                  title="Per-class report (labelled images)"))
    if report.predictions and report.predictions[0].get("heatmap"):
        folder = Path(report.predictions[0]["heatmap"]).parent
        out.print(f"{len(report.predictions)} heatmap(s) in {folder}")

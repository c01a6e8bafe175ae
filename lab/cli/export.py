"""`lab export RUN --format ...`: a run's model as safetensors, TorchScript or ONNX, checked
against the eager model on the run's test images before the command says it worked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lab.cli.common import (
    DataDirOpt,
    JsonOpt,
    RunsDirOpt,
    data_dir,
    err,
    out,
    print_json,
    runs_dir,
)


def export(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="safetensors | torchscript | onnx.")] = "safetensors",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write [default: runs/<id>/export/model.<ext>].",
        show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="last | best: which weights to export.")] = "last",
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="Compare the file with the eager model.")] = True,
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Export a run's model with its metadata (classes, input size, mean/std, accuracy)."""
    from lab.errors import RunFailed
    from lab.explain.export import ATOL, RTOL, export_run
    from lab.runs import resolve_run

    run = resolve_run(runs_dir(runs), run_ref)
    done = export_run(run, fmt, output, weights=weights, data_dir=data_dir(data), check=check,
                      opset=opset)
    if json_out:
        print_json(done.to_dict())
    else:
        size = done.path.stat().st_size / 2**20
        out.print(f"wrote {done.path} ({fmt}, {size:.1f} MiB): {done.metadata['num_classes']} "
                  f"classes, input {done.metadata['input_size']} px, weights {weights}")
        if done.passed is not None:
            mark = "[green]✓[/]" if done.passed else "[red]✗[/]"
            out.print(f"parity on {done.inputs}: max |Δ logit| {done.max_abs_diff:.2e}, "
                      f"top-1 agreement {100 * (done.top1_agree or 0):.1f}% {mark}")
    if done.passed is False:
        raise RunFailed(f"{done.path} does not match the eager model within |Δ| <= {ATOL:g} + "
                        f"{RTOL:g}·|logit| (kept for inspection)")


def export_metrics(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Run ids or prefixes [default: every run].",
        show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv | parquet.")] = "csv",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write [csv default: stdout].",
        show_default=False)] = None,
    runs: RunsDirOpt = None,
) -> None:
    """Metrics of runs as one tidy table: run, config fields, event, epoch, step, metric,
    value (whole events only: safe on a run still training)."""
    import sys

    from lab.errors import LabError, NotFoundError
    from lab.runs import list_runs, resolve_run
    from lab.views.tables import write_table

    path = runs_dir(runs)
    chosen = [resolve_run(path, r) for r in run_refs] if run_refs else list_runs(path)[::-1]
    readable = []
    for run in chosen:
        try:
            run.config()
            readable.append(run)
        except (LabError, OSError) as exc:
            if run_refs:
                raise
            err.print(f"skipped {run.id}: {exc}")
    if not readable:
        raise NotFoundError(f"no runs in {path}")
    count = write_table(readable, fmt, output, sys.stdout)
    if output is not None:
        out.print(f"wrote {count} rows of {len(readable)} run(s) to {output}")


tb_app = typer.Typer(no_args_is_help=True,
                     help="TensorBoard event files of runs (needs the tensorboard extra).")


@tb_app.command("export")
def tb_export(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Run ids or prefixes [default: every finished run].",
        show_default=False)] = None,
    runs: RunsDirOpt = None,
) -> None:
    """Write runs/<id>/tb/ from each run's records (scalars, per-class F1, hparams, grid);
    then: tensorboard --logdir runs/."""
    from lab import extras
    from lab.errors import LabError, NotFoundError
    from lab.launch.tensorboard import export_run
    from lab.runs import list_runs, resolve_run

    extras.require("tensorboard", "lab tb export")
    path = runs_dir(runs)
    chosen = [resolve_run(path, r) for r in run_refs] if run_refs else \
        [r for r in list_runs(path) if r.result_path.exists()]
    if not chosen:
        raise NotFoundError(f"no finished runs in {path}")
    failed = 0
    for run in chosen:
        try:
            written = export_run(run)
        except (LabError, OSError) as exc:
            failed += 1
            err.print(f"{run.id}: {exc}")
            continue
        out.print(f"{run.id}: {written}")
    if failed == len(chosen):
        raise typer.Exit(1)
    out.print(f"see them with: tensorboard --logdir {path}")

"""`lab report`: the study's write-up as plain files (Markdown and PNGs), no server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lab.cli.common import JsonOpt, RunsDirOpt, print_json, runs_dir_to_read


def report(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Runs to report (default: latest finished run of each level).",
        show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Report folder (default: <runs dir>/report); an older report there "
        "is replaced only once the new one is complete.", show_default=False)] = None,
    study: Annotated[str | None, typer.Option(
        "--study", help="Report a study instead: per configuration n, mean ± std, 95% interval "
        "and Δ against the baseline, error bars, mean curves with bands, the best run's "
        "Grad-CAM, and the observations.", show_default=False)] = None,
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """Write report.md with tables, curves, confusion heatmaps and Grad-CAM grids."""
    from lab.views.report import write_report

    written = write_report(runs_dir_to_read(runs_path), run_refs or None, out_dir, study)
    if json_out:
        print_json(written)
    else:  # plain write: a long path must not be wrapped or styled
        sys.stdout.write(written["report"] + "\n")

"""The `lab` command tree: Typer's app with every command group wired in, and the commands
other packages add (`load_plugins`). `lab.cli.main` builds it on first use; commands import torch
inside their functions, so `lab --help` answers at once.
"""

from __future__ import annotations

import typer

import lab.cli.bench as bench  # as submodules: this module is what `lab.cli` imports lazily
import lab.cli.data as data
import lab.cli.export as export_cmds
import lab.cli.gradcam as gradcam
import lab.cli.info as info
import lab.cli.jobs as jobs
import lab.cli.observations as observations
import lab.cli.predict as predict_cmds
import lab.cli.report as report_cmds
import lab.cli.results as results
import lab.cli.run as run_cmds
import lab.cli.studies as studies
import lab.cli.watch as watch
import lab.cli.worker as worker_cmds
from lab.cli.plugins import plugin_entries

app = typer.Typer(
    name="lab",
    help="A terminal lab console for image-classification experiments (CIFAR-10 study levels 1-3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(run_cmds.run)
app.command()(run_cmds.resume)
app.command()(run_cmds.demo)
app.command()(results.runs)
app.command()(results.show)
app.command()(results.compare)
app.command()(report_cmds.report)
app.command()(export_cmds.export)
app.command()(observations.observations)
app.command(name="export-metrics")(export_cmds.export_metrics)
app.add_typer(export_cmds.tb_app, name="tb")
app.command()(info.levels)
app.command()(info.doctor)
app.command()(bench.bench)
app.command()(predict_cmds.predict)
app.add_typer(data.app, name="data")
app.command()(jobs.submit)
app.command(name="queue")(jobs.queue_cmd)
app.command()(jobs.cancel)
app.command()(jobs.retry)
app.command()(jobs.logs)
app.command()(studies.study)
app.command()(watch.watch)
app.add_typer(worker_cmds.app, name="worker")
app.add_typer(gradcam.app, name="gradcam")


_plugins_loaded = False


def load_plugins() -> None:
    """Commands other packages add through the `lab.commands` entry point (the console's
    `lab tui` and `lab gradcam show`), loaded at start-up rather than imported by `lab/`."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in plugin_entries():
        entry.load()(app, {"gradcam": gradcam.app})

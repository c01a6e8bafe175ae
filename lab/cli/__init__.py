"""The `lab` command line: wires the command groups and maps every failure to one line.

Commands import torch inside their functions, so `lab --help` answers at once.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import typer

from lab.cli import bench, data, gradcam, info, jobs, results, watch
from lab.cli import report as report_cmds
from lab.cli import run as run_cmds
from lab.cli import worker as worker_cmds
from lab.cli.signals import Interrupted, interrupt_on_signals
from lab.errors import ExitCode, LabError, describe_os_error

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
app.command()(info.levels)
app.command()(info.doctor)
app.command()(bench.bench)
app.add_typer(data.app, name="data")
app.command()(jobs.submit)
app.command(name="queue")(jobs.queue_cmd)
app.command()(jobs.cancel)
app.command()(jobs.retry)
app.command()(jobs.logs)
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
    from importlib.metadata import entry_points

    for entry in entry_points(group="lab.commands"):
        entry.load()(app, {"gradcam": gradcam.app})


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every error into one `lab: error: ...` line and an
    exit code (see `lab.errors.ExitCode`). `--debug` anywhere on the line, or LAB_DEBUG=1,
    adds the traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("LAB_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    load_plugins()
    with interrupt_on_signals() as signals:
        try:
            code = _run(args, debug)
        except Interrupted:  # before the command started, or while an error was reported
            code = ExitCode.INTERRUPTED
        if signals and code == ExitCode.INTERRUPTED:  # Typer turns it into a silent exit 130
            _fail(f"interrupted by {signal.Signals(signals[0]).name}")
    sys.exit(int(code))


def _run(args: list[str], debug: bool) -> int:
    """The command's exit code; any error is reported here as one line."""
    code = ExitCode.OK
    try:
        rv = app(args=args, prog_name="lab", standalone_mode=False)
        code = rv if isinstance(rv, int) else ExitCode.OK
    except LabError as exc:
        code = _report(exc, str(exc), exc.exit_code, debug)
    except Interrupted:
        raise  # reported by `main`, which knows whether the command swallowed it
    except (KeyboardInterrupt, typer.Abort) as exc:
        code = _report(exc, "interrupted", ExitCode.INTERRUPTED, debug)
    except OSError as exc:
        described = describe_os_error(exc)
        code = _report(exc, str(described), described.exit_code, debug)
    except Exception as exc:
        # Click's parse errors (Typer vendors Click in newer releases, so match by shape).
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            path = ctx.command_path if ctx is not None else "lab"
            code = _report(exc, f"{exc.format_message()} (see `{path} --help`)",
                           ExitCode.USAGE if exc.exit_code == 2 else ExitCode.FAILED, debug)
        else:
            hint = "" if debug else " (run again with --debug for the traceback)"
            code = _report(exc, f"internal error: {type(exc).__name__}: {exc}{hint}",
                           ExitCode.FAILED, debug)
    return code


def _report(exc: BaseException, message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    _fail(" ".join(message.split("\n")))
    return code


def _fail(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"lab: error: {message}\n")
    sys.stderr.flush()

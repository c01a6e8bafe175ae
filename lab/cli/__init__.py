"""The `lab` command line: runs a command and maps every failure to one line.

The Typer tree (`lab.cli.tree`: Typer, pydantic and every command group's module) is built on
first use. A command another package adds may parse a plain line itself (`lab.cli.plugins`):
`lab tui` then starts the console without building the tree; `lab tui --help` and any line it
does not take go through Typer as ever.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

from lab.cli.plugins import run_fast
from lab.cli.signals import Interrupted, interrupt_on_signals
from lab.errors import ExitCode, LabError, describe_os_error


def __getattr__(name: str) -> Any:
    """`app` and `load_plugins` (the Typer tree) are imported when first asked for."""
    if name in ("app", "load_plugins"):
        from lab.cli import tree

        return getattr(tree, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every error into one `lab: error: ...` line and an
    exit code (see `lab.errors.ExitCode`). `--debug` anywhere on the line, or LAB_DEBUG=1,
    adds the traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("LAB_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    signals: list[int] = []
    code: int = ExitCode.INTERRUPTED
    try:  # around the `with`: the first signal may come while its handlers are installed
        with interrupt_on_signals(signals):
            code = _run(args, debug)
    except Interrupted:  # before the command started, or while an error was reported
        code = ExitCode.INTERRUPTED
    if signals and code == ExitCode.INTERRUPTED:  # Typer turns it into a silent exit 130
        _fail(f"interrupted by {signal.Signals(signals[0]).name}")  # later signals are ignored
    from lab.core.collectives import leave

    leave(int(code))  # a rank of the user's torchrun skips the interpreter's teardown


def _app() -> Any:
    """The Typer app with the plugins' commands (a test may have swapped `lab.cli.app`)."""
    from lab.cli import tree

    tree.load_plugins()
    return globals().get("app", tree.app)


def _interrupts() -> tuple[type[BaseException], ...]:
    """Ctrl-C, and Typer's Abort once Typer is loaded (it cannot have been raised before)."""
    typer = sys.modules.get("typer")
    return (KeyboardInterrupt, typer.Abort) if typer is not None else (KeyboardInterrupt,)


def _run(args: list[str], debug: bool) -> int:
    """The command's exit code; any error is reported here as one line."""
    code = ExitCode.OK
    try:
        rv = run_fast(args)
        if rv is None:
            rv = _app()(args=args, prog_name="lab", standalone_mode=False)
        code = rv if isinstance(rv, int) else ExitCode.OK
    except LabError as exc:
        code = _report(exc, str(exc), exc.exit_code, debug)
    except Interrupted:
        raise  # reported by `main`, which knows whether the command swallowed it
    except _interrupts() as exc:
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

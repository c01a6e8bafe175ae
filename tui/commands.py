"""The `lab.commands` entry point of the `tui` package: `lab tui` and `lab gradcam show`.

`register(app, groups)` adds the Typer commands (`tui.cli`) to the `lab` tree. `register.fast`
starts the console on a plain `lab tui` line without that tree (Typer, pydantic, every other
command's module: half a second before the first screen); any other line, `--help` or a mistake
included, is left to Typer, so it is answered as before. This module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the options a plain `lab tui` line may carry, each with a value; their Typer names (tui.cli)
PLAIN_OPTIONS = {"--runs-dir": "runs", "--data-dir": "data", "--theme": "theme"}


class Commands:
    """What `lab.cli` finds under the entry point's name (`tui`)."""

    def __call__(self, app: Any, groups: dict[str, Any]) -> None:
        """Add the commands to the `lab` app and its `gradcam` group."""
        from lab.cli.plugins import add_picture_drawer
        from tui import cli

        app.command()(cli.tui)
        groups["gradcam"].command()(cli.show)
        add_picture_drawer(cli.draw_picture)

    def fast(self, args: list[str]) -> int | None:
        """`lab tui ARGS` when they are plain options (exit code), else None for Typer."""
        options = plain_options(args)
        if options is None:
            return None
        from lab.paths import default_data_dir
        from lab.runs import default_runs_dir

        runs = Path(options["runs"]) if "runs" in options else default_runs_dir()
        data = Path(options["data"]) if "data" in options else default_data_dir()
        from tui.start import run_console

        return run_console(runs, data, options.get("theme"))


register = Commands()


def plain_options(args: list[str]) -> dict[str, str] | None:
    """`--runs-dir`, `--data-dir` and `--theme`, as `--name VALUE` or `--name=VALUE`; None if
    anything else is on the line or a value is empty or looks like an option."""
    found: dict[str, str] = {}
    rest = list(args)
    while rest:
        name, eq, value = rest.pop(0).partition("=")
        if name not in PLAIN_OPTIONS:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        found[PLAIN_OPTIONS[name]] = value
    return found

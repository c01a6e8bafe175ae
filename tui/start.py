"""Starting the console in this terminal, for `lab tui` (Typer's `tui.cli.tui` and the plain
line's `tui.commands.register.fast`)."""

from __future__ import annotations

from pathlib import Path


def run_console(runs_dir: Path, data_dir: Path, theme: str | None) -> int:
    """Run the console in this terminal until it quits; its exit code (130 after SIGTERM or
    SIGHUP). The terminal's graphics are asked first, while nothing else reads it."""
    from tui import graphics

    graphics.probe()
    from tui.app import make_app

    app = make_app(runs_dir, data_dir, theme=theme)
    app.run()
    return app.return_code or 0

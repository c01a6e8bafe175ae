"""`lab tui`: the Textual console. Textual is imported only here, inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lab.cli.common import DataDirOpt, RunsDirOpt, data_dir, out, runs_dir


def tui(
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
    screenshot: Annotated[Path | None, typer.Option(
        "--screenshot", help="Render headless and save an SVG of the screen here, then exit.",
        show_default=False)] = None,
    size: Annotated[str, typer.Option(help="Screenshot size, COLUMNSxROWS.")] = "120x40",
    press: Annotated[str, typer.Option(
        help="Screenshot: keys to press first, comma-separated (e.g. 'down,space,down,space,7')."
    )] = "",
    theme: Annotated[str | None, typer.Option(
        help="Textual theme, e.g. textual-dark or textual-light.", show_default=False)] = None,
) -> None:
    """The lab console: jobs and runs, live curves, compare, new jobs, Grad-CAM (keyboard only;
    quitting it leaves every job and worker running)."""
    from lab.errors import ConfigError

    runs_path, data_path = runs_dir(runs), data_dir(data)
    if screenshot is not None:
        try:
            cols, rows = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {size!r}: expected COLUMNSxROWS, e.g. 120x40") from None
        if not (20 <= cols <= 1000 and 10 <= rows <= 1000):
            raise ConfigError(f"--size {size!r}: between 20x10 and 1000x1000")
        from tui.screenshot import screenshot as shoot

        keys = [k.strip() for k in press.split(",") if k.strip()]
        written = shoot(runs_path, data_path, screenshot, (cols, rows), keys, theme=theme)
        out.print(f"screenshot: {written}")
        return
    import logging

    # textual-image asks the terminal about graphics and cell size while it is imported,
    # which only works before Textual takes the terminal over; a terminal that does not
    # answer is fine (half-cell blocks), so its warning with a traceback is not shown.
    logging.getLogger("textual_image").setLevel(logging.ERROR)
    import textual_image.widget  # noqa: F401

    from tui.app import make_app

    make_app(runs_path, data_path, theme=theme).run()

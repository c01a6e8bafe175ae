"""The commands other packages add: `lab.commands` entry points, each named for the top-level
command it adds. Called with `(app, groups)` one adds its Typer commands to the tree
(`lab.cli.tree.load_plugins`); its object may also offer `fast(args) -> int | None`, which runs
the command on a line it parses itself and returns None for the lines it leaves to Typer."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

GROUP = "lab.commands"


@cache
def plugin_entries() -> tuple[Any, ...]:
    """The entry points, found once (reading them costs importlib.metadata's import)."""
    from importlib.metadata import entry_points

    return tuple(entry_points(group=GROUP))


def run_fast(args: list[str]) -> int | None:
    """The exit code of a plugin command that took the line itself, or None."""
    if not args or args[0].startswith("-"):
        return None
    for entry in plugin_entries():
        if entry.name == args[0]:
            fast = getattr(entry.load(), "fast", None)
            if fast is not None:
                return fast(args[1:])
    return None


# How a picture is drawn in the terminal: terminal graphics live in the console package, which
# offers its drawer when its commands are registered (`lab predict --show` draws with it).
PictureDrawer = Callable[[Path, str], None]
_drawers: list[PictureDrawer] = []


def add_picture_drawer(draw: PictureDrawer) -> None:
    """Offer `draw(png_path, caption)`; the last one offered is used."""
    _drawers.append(draw)


def picture_drawer() -> PictureDrawer | None:
    return _drawers[-1] if _drawers else None

"""Render the console headless at a given size and save what it shows as an SVG.

Used by `lab tui --screenshot PATH` (the README's pictures) : the app exports itself with
Textual's `save_screenshot`, on the real runs directory, after the given keys are pressed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tui.app import make_app

READY_TIMEOUT_S = 30.0


async def _shoot(app: Any, path: Path, size: tuple[int, int], keys: Sequence[str],
                 settle: float) -> Path:
    async with app.run_test(size=size) as pilot:
        await _wait(pilot, lambda: app.ready_rows is not None)
        await pilot.pause(settle)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(settle)
        await app.workers.wait_for_complete()
        await pilot.pause(settle)
        written = app.save_screenshot(filename=path.name, path=str(path.parent))
    return Path(written)


async def _wait(pilot: Any, condition: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the console did not become ready")
        await pilot.pause(0.05)


def screenshot(runs_dir: Path, data_dir: Path, path: Path, size: tuple[int, int] = (120, 40),
               keys: Sequence[str] = (), settle: float = 0.3, **options: Any) -> Path:
    """Start the console headless, press `keys`, save an SVG of the screen at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    app = make_app(runs_dir, data_dir, **options)
    return asyncio.run(_shoot(app, path, size, keys, settle))

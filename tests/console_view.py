"""The console as a test sees it: the real app under `run_test`, driven to one screen, and what
it then shows. Also a program, printing JSON, so a test can run it in a child without
capabilities, where permission bits hold even for root (`tests/readonly.py`):
`python -m tests.console_view compare RUNS DATA` or `... submit DATA RUNS...`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from textual.app import Notify

from lab.levels import level_config
from tests.tui_runs import fixed_devices, plain
from tui.app import make_app
from tui.screens.compare import CompareScreen
from tui.screens.main import MainScreen
from tui.screens.new_job import JobRequest


async def compare_screen(runs: Path, data: Path, size: tuple[int, int] = (120, 40),
                         ) -> dict[str, Any]:
    """Open the console and press `m` (the latest run of each level): the compared names, the
    table's text (caption and notes included) and the screen's notes on runs left out."""
    app = make_app(runs, data, device_probe=fixed_devices, refresh_s=0.5, poll_s=0.25)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.ready_rows is not None)
        await pilot.press("m")

        def loaded() -> bool:  # the screen may be pushed before its widgets are mounted
            tables = app.screen.query("#compare-table")
            return isinstance(app.screen, CompareScreen) and bool(tables) \
                and "loading" not in plain(tables.first().content)

        await until(pilot, loaded)
        screen = app.screen
        await pilot.pause()
        return {"names": screen.names(), "notes": list(screen.notes),
                "table": plain(screen.query_one("#compare-table").content, width=size[0])}


async def submit_in_console(runs: Path, data: Path) -> list[dict[str, str]]:
    """Hand a job to the main screen as the new-job dialog hands it over: every notification
    (severity, message) up to the one that answers the submit."""
    seen: list[dict[str, str]] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            seen.append({"severity": message.notification.severity,
                         "message": message.notification.message})

    config = level_config(3).replace(dataset="digits", image_size=16, epochs=1, device="cpu")
    app = make_app(runs, data, device_probe=fixed_devices, refresh_s=0.5, poll_s=0.25)
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await until(pilot, lambda: app.ready_rows is not None)
        main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
        before = len(seen)
        main._submit(JobRequest(config, 0))  # what the dialog's Submit calls back
        await until(pilot, lambda: any("job" in n["message"] or "runs directory" in
                                       n["message"] for n in seen[before:]))
        await pilot.pause()
    return seen


async def until(pilot: Any, condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the console")
        await pilot.pause(0.05)


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        shown: Any = asyncio.run(compare_screen(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        shown = [asyncio.run(submit_in_console(Path(runs), Path(sys.argv[2])))
                 for runs in sys.argv[3:]]
    sys.stdout.write(json.dumps(shown) + "\n")

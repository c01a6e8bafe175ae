"""Snapshots of the console (pytest-textual-snapshot): main screen, compare screen, new-job dialog,
at 80×24 and 120×40. Deterministic: fixed run ids, times and numbers, a frozen clock, a fixed
device reading, no timers firing. Regenerate with `pytest tests/test_tui_snapshots.py
--snapshot-update` and look at the SVGs in tests/__snapshots__/ before committing them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from tests.tui_runs import FIXED_NOW, fixed_devices, write_studies, write_study
from tui.app import LabApp, make_app
from tui.screens.compare import CompareScreen
from tui.screens.main import MainScreen
from tui.screens.new_job import NewJobScreen
from tui.state import save_section

SIZES = [pytest.param((80, 24), marks=pytest.mark.slow), (120, 40)]  # 80x24: the full suite


@pytest.fixture
def study_app(lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> LabApp:
    monkeypatch.delenv("NO_COLOR", raising=False)  # the snapshots are in colour
    monkeypatch.chdir(lab_dirs["runs"].parent)  # the top bar shows "runs/", not a temp path
    write_study(Path("runs"))
    return make_app(Path("runs"), Path("data"), clock=lambda: FIXED_NOW,
                    device_probe=fixed_devices, refresh_s=3600, poll_s=3600)


@pytest.fixture
def studies_app(study_app: LabApp) -> LabApp:
    """The same runs and two studies: `seeds` unfolded, `lr` folded by the last session."""
    write_studies(Path("runs"))
    save_section("console", {"collapsed": ["lr"]})
    return make_app(Path("runs"), Path("data"), clock=lambda: FIXED_NOW,
                    device_probe=fixed_devices, refresh_s=3600, poll_s=3600)


async def _until(pilot: Any, condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the console did not settle"
        await pilot.pause(0.05)


async def _ready(pilot: Any) -> None:
    app = pilot.app
    await _until(pilot, lambda: app.ready_rows is not None)
    main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
    await _until(pilot, lambda: main.detail is not None and main.row is not None
                 and main.detail.key == main.row.key)
    await _settle(pilot)


async def _settle(pilot: Any) -> None:
    """Let every worker, resize and animation finish: a busy machine must not change a pixel."""
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Any, study_app: LabApp, size: tuple[int, int]) -> None:
    assert snap_compare(study_app, terminal_size=size, run_before=_ready)


def test_main_screen_with_studies(snap_compare: Any, studies_app: LabApp) -> None:
    assert snap_compare(studies_app, terminal_size=(120, 40), run_before=_ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare: Any, study_app: LabApp, size: tuple[int, int]) -> None:
    async def compare(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("m")
        await _until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                     and pilot.app.screen.rows)
        await _settle(pilot)

    assert snap_compare(study_app, terminal_size=size, run_before=compare)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_new_job_dialog(snap_compare: Any, study_app: LabApp, size: tuple[int, int]) -> None:
    async def dialog(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("n")
        await _until(pilot, lambda: isinstance(pilot.app.screen, NewJobScreen))
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor is a coin toss in a snapshot
        await pilot.press("tab", *"0", "ctrl+s")  # epochs 0: the dialog says why it refuses
        await _settle(pilot)

    assert snap_compare(study_app, terminal_size=size, run_before=dialog)

"""The console as a newcomer meets it (issue 14): what it opens on, an empty runs directory, keys
that do what the help says, names and keys that are never cut at 80×24, notifications that never
cover the key bar, a question before anything destructive, and preferences kept across restarts.

Synthetic runs with fixed ids (no training), the real app under the Pilot, a real job queue."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import TabbedContent

from lab.levels import level_config
from lab.queue import JobQueue
from tests.test_tui import started as started_on
from tests.test_tui import until
from tests.tui_runs import FIXED_NOW, aio, fixed_devices, plain, write_study
from tui.app import LabApp, make_app
from tui.model import sort_rows
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.state import save_section
from tui.widgets.keybar import KeyBar
from tui.widgets.run_list import RunList
from tui.widgets.run_tabs import TABS, RunTabs

pytestmark = pytest.mark.slow  # each starts the console: a few seconds on a busy machine

SIZES = [(80, 24), (120, 40)]
size_ids = [f"{w}x{h}" for w, h in SIZES]


@pytest.fixture
def runs(lab_dirs: dict[str, Path]) -> Path:
    write_study(lab_dirs["runs"])
    return lab_dirs["runs"]


def app_for(runs: Path) -> LabApp:
    return make_app(runs, runs.parent / "data", clock=lambda: FIXED_NOW,
                    device_probe=fixed_devices, refresh_s=0.3, poll_s=0.25)


async def started(pilot: Any) -> MainScreen:
    """The list is read and the selected row's detail is in its tabs, no key pressed."""
    return await started_on(pilot, pilot.app)


def queue_job(runs: Path, *, running: bool = False) -> int:
    """A real job in the real queue; `running` claims it for this (live) process, as a worker
    would, so a cancel only flags it."""
    config = level_config(3).replace(dataset="digits", image_size=16, epochs=1, device="cpu")
    with JobQueue.open(runs) as queue:
        [job] = queue.submit([config])
        if running:
            assert queue.claim("test-worker", os.getpid(), "cpu", 600.0, job_id=job.id)
    return job.id


def job_record(runs: Path, job_id: int) -> dict[str, Any]:
    with JobQueue.open(runs, create=False) as queue:
        return dict(queue.get(job_id).__dict__)


# ---- what the console opens on -----------------------------------------------------------
@aio
@pytest.mark.parametrize("with_job, sort", [(False, "newest"), (True, "newest"),
                                            (False, "accuracy")],
                         ids=["runs", "job-and-runs", "sorted-by-accuracy"])
async def test_opens_on_the_newest_row_with_its_tabs_filled(runs: Path, with_job: bool,
                                                            sort: str) -> None:
    job_id = queue_job(runs) if with_job else None
    save_section("console", {"sort": sort})  # the last session's sort
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot)
        run_list = app.query_one(RunList)
        newest = sort_rows(run_list.shown, "newest")[0]
        assert run_list.sort == sort and main.row == newest
        assert run_list.table.cursor_row == run_list.shown.index(newest)
        if with_job:
            assert newest.job_id == job_id
            assert "curves appear once a worker starts it" in plain(
                app.query_one("#curves-note").content)
        else:
            assert newest.run_id == "20250301-113000-l3-0d04"
            assert "loss" in plain(app.query_one("#curves-epochs").content)
        assert not app.query_one(RunTabs).has_class("-hint")


@aio
@pytest.mark.parametrize("size", SIZES, ids=size_ids)
async def test_an_empty_runs_dir_says_what_to_do(lab_dirs: dict[str, Path],
                                                 size: tuple[int, int]) -> None:
    lab_dirs["runs"].mkdir(parents=True)
    app = app_for(lab_dirs["runs"])
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.ready_rows == 0)
        await pilot.pause()
        tabs = app.query_one(RunTabs)
        hint = tabs.query_one("#tabs-hint")
        assert hint.display and not tabs.query_one(TabbedContent).display
        text = plain(hint.content, width=hint.content_region.width)
        for words in ("No jobs or runs in", "n\n", "queue a new job", "lab demo",
                      "lab data import PATH"):
            assert words in text, (words, text)
        assert hint.region.height >= len(text.strip().splitlines())  # all of it on screen


# ---- keys that do what the help says, shown whole --------------------------------------
@aio
async def test_home_and_end_go_to_the_first_and_last_row(runs: Path) -> None:
    app = app_for(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await started(pilot)
        shown = app.query_one(RunList).shown
        await pilot.press("end")
        await until(pilot, lambda: main.detail.key == shown[-1].key)
        await pilot.press("home")
        await until(pilot, lambda: main.detail.key == shown[0].key)


@aio
@pytest.mark.parametrize("size", SIZES, ids=size_ids)
async def test_help_shows_every_key_whole(runs: Path, size: tuple[int, int]) -> None:
    app = app_for(runs)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        table = app.screen.query_one("#help-keys")
        lines = plain(table.content, width=table.content_region.width).splitlines()
        keys = [key for key, _what in app.screen.keys]
        assert {"home", "end", "c", "?", "↑ ↓ pgup pgdn", "tab shift+tab"} <= set(keys)
        for key in keys:
            assert any(line.startswith(key + " ") for line in lines), (key, lines)


@aio
@pytest.mark.parametrize("size", SIZES, ids=size_ids)
async def test_every_tab_name_is_on_screen(runs: Path, size: tuple[int, int]) -> None:
    app = app_for(runs)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        for key in ("7", "1"):  # the last tab, then back: none scrolls out of view
            await pilot.press(key)
            await pilot.pause(0.3)
            tabbed = app.query_one(TabbedContent)
            pane_box = app.query_one(RunTabs).region
            for pane, _title in TABS:
                tab = tabbed.get_tab(pane)
                label = tab.label.plain
                assert label and tab.region.width >= len(label), (pane, tab.region)
                assert pane_box.contains_region(tab.region), (pane, tab.region, pane_box)
                x, y = tab.region.x + tab.region.width // 2, tab.region.y
                assert app.screen.get_widget_at(x, y)[0] is tab, pane


@aio
@pytest.mark.parametrize("size", SIZES, ids=size_ids)
async def test_a_notification_never_covers_the_key_bar(runs: Path,
                                                       size: tuple[int, int]) -> None:
    app = app_for(runs)
    async with app.run_test(size=size, notifications=True) as pilot:
        main = await started(pilot)
        keybar = app.query_one(KeyBar)
        main.notify("starting a detached worker…", timeout=30)
        await until(pilot, lambda: app.screen.query("Toast")
                    and app.screen.query_one("Toast").region.height)
        await pilot.pause()  # the toast rack is placed in the refresh after the toast mounts
        toast = app.screen.query_one("Toast")
        assert not toast.region.overlaps(keybar.region), (toast.region, keybar.region)
        box = keybar.region
        for y in range(box.y, box.bottom):
            for x in range(box.x, box.right):
                assert app.screen.get_widget_at(x, y)[0] is keybar, (x, y)


# ---- a question before anything destructive -------------------------------------------
@aio
@pytest.mark.parametrize("running", [False, True], ids=["queued", "running"])
@pytest.mark.parametrize("answer", ["n", "escape", "enter"])
async def test_cancel_asks_and_no_changes_nothing(runs: Path, running: bool,
                                                  answer: str) -> None:
    job_id = queue_job(runs, running=running)
    before = job_record(runs, job_id)
    app = app_for(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await started(pilot)
        assert main.row.job_id == job_id
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Cancel job #" in plain(app.screen.query_one("#confirm-question").content)
        await pilot.press(answer)  # enter answers the focused button: "no"
        await until(pilot, lambda: app.screen is main)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
    assert job_record(runs, job_id) == before


@aio
@pytest.mark.parametrize("running", [False, True], ids=["queued", "running"])
async def test_cancel_confirmed_cancels(runs: Path, running: bool) -> None:
    job_id = queue_job(runs, running=running)
    app = app_for(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: job_record(runs, job_id)["cancel_requested"])
    job = job_record(runs, job_id)
    assert job["state"] == ("running" if running else "cancelled")  # running: stops itself


# ---- preferences across restarts ----------------------------------------------------------
@aio
async def test_marks_sort_and_theme_come_back_after_a_restart(runs: Path) -> None:
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        run_list = app.query_one(RunList)
        await pilot.press("down", "space", "down", "space", "s", "s", "t")
        marked = {r.run_id for r in run_list.marked_rows()}
        assert len(marked) == 2 and run_list.sort == "accuracy"
        assert app.theme == "textual-light"
        await pilot.press("q")

    gone = sorted(marked)[0]  # one marked run is deleted between the sessions
    shutil.rmtree(runs / gone)
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        run_list = app.query_one(RunList)
        assert app.theme == "textual-light" and run_list.sort == "accuracy"
        await until(pilot, lambda: run_list.marked)
        assert {r.run_id for r in run_list.marked_rows()} == marked - {gone}
        assert "1 marked" in plain(run_list.query_one("#list-title").content)


@aio
@pytest.mark.parametrize("content", [b"{", b"\xff", b'{"version": 1, "sections": {"console": '
                                     b'{"marks": 7, "sort": "sideways", "theme": "nope"}}}'])
async def test_a_bad_state_file_still_opens_the_console(runs: Path, content: bytes) -> None:
    Path(os.environ["LAB_STATE_FILE"]).write_bytes(content)
    app = app_for(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await started(pilot)
        run_list = app.query_one(RunList)
        assert run_list.sort == "newest" and not run_list.marked
        assert app.theme == "textual-dark" and main.row == run_list.shown[0]

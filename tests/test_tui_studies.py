"""Studies in the console (issue 15): each study a group in the list under a header row with its
progress and accuracy, folded and unfolded by keys, kept folded across refreshes and restarts;
a group of marked runs drawn as its mean curve with a min–max band in the Overlay tab and on
the compare screen.

Synthetic runs with fixed ids (no training), the real app under the Pilot, a real job queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.levels import level_config
from lab.queue import JobQueue
from lab.views.charts import BAND_LABEL
from tests.test_tui import started, until
from tests.tui_runs import (
    FIXED_NOW,
    SEEDS,
    aio,
    fixed_devices,
    plain,
    write_studies,
    write_study,
)
from tui.app import LabApp, make_app
from tui.model import Row, sort_rows
from tui.screens.compare import CompareScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.state import load_section
from tui.widgets.curves import OverlayView
from tui.widgets.keybar import KeyBar
from tui.widgets.run_list import RunList

pytestmark = pytest.mark.slow  # each starts the console: a few seconds on a busy machine

@pytest.fixture
def runs(lab_dirs: dict[str, Path]) -> Path:
    write_study(lab_dirs["runs"])
    write_studies(lab_dirs["runs"])
    return lab_dirs["runs"]


def queue_study_job(runs: Path) -> int:
    """A queued job of study `seeds` (a fourth seed): no run yet, only its config says so."""
    config = level_config(2).replace(dataset="digits", image_size=16, epochs=1, device="cpu",
                                     weights="none", study="seeds", seed=4)
    with JobQueue.open(runs) as queue:
        [job] = queue.submit([config])
    return job.id


def app_for(runs: Path) -> LabApp:
    return make_app(runs, runs.parent / "data", clock=lambda: FIXED_NOW,
                    device_probe=fixed_devices, refresh_s=0.3, poll_s=0.25)


@asynccontextmanager
async def console(runs: Path) -> AsyncIterator[tuple[Any, MainScreen, RunList]]:
    """The console at 120×40 with its list read and the selected row in its tabs."""
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        yield pilot, main, app.query_one(RunList)


def line(run_list: RunList, key: str) -> str:
    return "".join(cell.plain for cell in run_list.table.get_row(key))


def check_groups(shown: list[Row], rows: list[Row], sort: str) -> None:
    """Every study: its header, then exactly its rows in the sort's order; the rows outside a
    study in the order the list had before studies existed."""
    keys = [r.key for r in shown]
    assert [r for r in shown if not r.study] == sort_rows([r for r in rows if not r.study], sort)
    for study in {r.study for r in rows if r.study}:
        members = sort_rows([r for r in rows if r.study == study], sort)
        start = keys.index(f"study:{study}")
        assert keys[start + 1:start + 1 + len(members)] == [m.key for m in members]


def test_the_test_data_has_what_the_groups_need(tmp_path: Path) -> None:
    write_studies(tmp_path)
    from lab.runs import RunDir

    assert {RunDir(tmp_path / i).config().study for i in SEEDS} == {"seeds"}
    assert len({RunDir(tmp_path / i).config().seed for i in SEEDS}) == 3


@aio
async def test_studies_list_as_groups_with_their_progress(runs: Path) -> None:
    job = queue_study_job(runs)
    async with console(runs) as (pilot, _main, run_list):
        app = pilot.app
        await until(pilot, lambda: any(r.is_header for r in run_list.shown))
        rows = run_list.rows
        assert next(r for r in rows if r.key == f"job:{job}").study == "seeds"  # before a run
        for sort in ("newest", "state", "accuracy", "level", "name"):
            while run_list.sort != sort:
                await pilot.press("s")
            await pilot.pause()
            check_groups(run_list.shown, rows, sort)
        header = line(run_list, "study:seeds")
        tests = [acc - 0.01 for acc in SEEDS.values()]  # write_run: test = final - 0.01
        assert "seeds" in header and "✓3 ·1" in header and "×4" in header
        assert f"▲{100 * max(tests):.1f}%" in header
        assert f"μ{100 * sum(tests) / 3:.1f}%" in header
        assert "✓2" in line(run_list, "study:lr")
        keys = [what for _key, what, _on in app.query_one(KeyBar).items()]
        assert "fold" in keys  # z shows where there are studies


@aio
async def test_fold_and_unfold_keep_the_cursor_and_survive_refresh_and_restart(
        runs: Path, lab_dirs: dict[str, Path]) -> None:
    member = f"run:{next(iter(SEEDS))}"
    async with console(runs) as (pilot, main, run_list):
        app = pilot.app
        run_list.select(member)
        await until(pilot, lambda: main.row is not None and main.row.key == member)

        await pilot.press("z")  # fold every study: the cursor goes to its row's header
        await until(pilot, lambda: run_list.collapsed == {"seeds", "lr"})
        keys = [r.key for r in run_list.shown]
        assert not any(r.study and not r.is_header for r in run_list.shown)
        assert {"study:seeds", "study:lr"} <= set(keys)
        await until(pilot, lambda: main.row is not None and main.row.key == "study:seeds")
        assert run_list.table.cursor_row == keys.index("study:seeds")
        assert "Study seeds" in plain(app.query_one("#tabs-hint").content)
        assert "▸" in line(run_list, "study:seeds")

        await pilot.press("space")  # on a header: unfolds it, marks nothing
        await until(pilot, lambda: run_list.collapsed == {"lr"})
        assert not run_list.marked and main.row.key == "study:seeds"
        assert member in [r.key for r in run_list.shown]
        await pilot.press("enter")  # folds it again
        await until(pilot, lambda: run_list.collapsed == {"seeds", "lr"})

        before = [r.key for r in run_list.shown]
        main.refresh_rows()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.2)
        assert [r.key for r in run_list.shown] == before and main.row.key == "study:seeds"

        await pilot.press("z")  # all folded: z unfolds them all
        await until(pilot, lambda: not run_list.collapsed)
        await pilot.press("z")
        await until(pilot, lambda: run_list.collapsed == {"seeds", "lr"})
    assert sorted(load_section("console").get("collapsed", [])) == ["lr", "seeds"]

    again = app_for(runs)  # the next session starts folded as this one ended
    async with again.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: again.ready_rows is not None)
        run_list = again.query_one(RunList)
        await until(pilot, lambda: any(r.is_header for r in run_list.shown))
        assert run_list.collapsed == {"seeds", "lr"}
        assert not any(r.study and not r.is_header for r in run_list.shown)


@aio
async def test_a_filter_by_a_study_name_shows_the_study(runs: Path) -> None:
    async with console(runs) as (pilot, _main, run_list):
        app = pilot.app
        await pilot.press("slash", *"seeds", "enter")
        await until(pilot, lambda: run_list.filter_text == "seeds")
        await pilot.pause()
        assert [r.key for r in run_list.shown] == \
            ["study:seeds", *(f"run:{i}" for i in sorted(SEEDS, reverse=True))]
        assert "3/10" in plain(app.query_one("#list-title").content)  # runs, not headers


@aio
async def test_without_studies_the_list_and_keys_are_as_before(lab_dirs: dict[str, Path]) -> None:
    write_study(lab_dirs["runs"])
    async with console(lab_dirs["runs"]) as (pilot, _main, run_list):
        app = pilot.app
        assert not any(r.is_header for r in run_list.shown)
        assert run_list.shown == sort_rows(run_list.rows, "newest")
        assert "fold" not in [what for _key, what, _on in app.query_one(KeyBar).items()]
        await pilot.press("z")  # hidden and harmless
        await pilot.pause()
        assert not run_list.collapsed
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = plain(app.screen.query_one("#help-keys").content)
        assert "fold every study" in text and "enter" in text  # the help lists them always


@aio
async def test_marked_runs_of_a_group_draw_its_mean_and_band(runs: Path) -> None:
    async with console(runs) as (pilot, _main, run_list):
        app = pilot.app
        first, second, _ = SEEDS
        single = "run:20250301-100000-l3-0c03"  # no study: a single curve as before
        run_list.marked = frozenset({f"run:{first}", f"run:{second}", single})
        await pilot.press("7")
        overlay = app.query_one("#view-overlay", OverlayView)
        await until(pilot, lambda: len(overlay.series) == 3 and overlay.groups)
        labels = {r.key: r.label for r in run_list.marked_rows()}
        assert overlay.groups == {"seeds L2": [labels[f"run:{first}"],
                                               labels[f"run:{second}"]]}
        await pilot.pause()
        text = plain(overlay.content)
        assert "seeds L2 ×2" in text and BAND_LABEL in text and labels[single] in text
        assert labels[f"run:{first}"] not in text  # a member is in its group's curve

        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rows)
        compare = app.screen.query_one(OverlayView)
        await until(pilot, lambda: compare.groups == overlay.groups)
        await pilot.pause()
        text = plain(compare.content)
        assert "seeds L2 ×2" in text and BAND_LABEL in text

"""The console driven by the Pilot on real run directories made by the engine."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from lab.queue import JobQueue
from lab.runs import RunDir, atomic_write_json
from tests.tui_runs import aio, copy_runs, make_real_runs, plain
from tui.app import LabApp, make_app
from tui.model import RowSource
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.new_job import NewJobScreen
from tui.widgets.curves import CurvesView, OverlayView
from tui.widgets.gradcam_view import GradcamView
from tui.widgets.keybar import KeyBar
from tui.widgets.run_list import RunList

pytestmark = pytest.mark.slow  # real runs made by the engine, then the console


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Made once for the module: a Level 1 and a Level 3 run (with a Grad-CAM gallery)."""
    return make_real_runs(tmp_path_factory.mktemp("tui-real"))


@pytest.fixture
def runs(real: dict[str, Any], lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
         ) -> Path:
    """A private copy of the real runs in this test's runs directory."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    lab_dirs["runs"].mkdir(parents=True, exist_ok=True)
    copy_runs(real["runs"], lab_dirs["runs"], keep_checkpoints=False)
    return lab_dirs["runs"]


def app_for(runs: Path, real: dict[str, Any], **options: Any) -> LabApp:
    return make_app(runs, real["data"], **{"refresh_s": 0.5, "poll_s": 0.25, **options})


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition.__doc__ or condition}")
        await pilot.pause(0.05)


def main_screen(app: LabApp) -> MainScreen:
    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


async def started(pilot: Any, app: LabApp) -> MainScreen:
    await until(pilot, lambda: app.ready_rows is not None)
    main = main_screen(app)
    await until(pilot, lambda: main.detail is not None and main.row is not None
                and main.detail.key == main.row.key)
    return main


def shown(widget: Any) -> str:
    return plain(widget.content)


@aio
async def test_navigate_the_list_and_open_every_tab(runs: Path, real: dict[str, Any]) -> None:
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        names = [r.run_id for r in app.query_one(RunList).shown]
        assert names == [real["l3"], real["l1"]]  # newest first
        assert main.detail.run_id == real["l3"]
        await pilot.press("down")
        await until(pilot, lambda: main.detail.run_id == real["l1"])
        await pilot.press("up")
        await until(pilot, lambda: main.detail.run_id == real["l3"])

        expect = {
            "1": ("curves", "#curves-epochs", ["loss", "accuracy (%)"]),
            "2": ("per-class", "#view-per-class Static", ["macro", "◀", "test acc"]),
            "3": ("confusion", "#view-confusion Static", ["true ↓ predicted →",
                                                          "most-confused pairs"]),
            "5": ("config", "#view-config Static", [real["l3"], "cnn_channels", "8,16,16,32"]),
            "6": ("log", "#view-log Static", ["epoch   2", "test    loss"]),
            "7": ("overlay", "#view-overlay", ["mark runs with space"]),
        }
        for key, (pane, selector, words) in expect.items():
            await pilot.press(key)
            await pilot.pause()
            assert main.tabs.active == pane
            text = shown(app.query_one(selector))
            for word in words:
                assert word in text, (pane, word, text[:400])
        await pilot.press("4")
        await pilot.pause()
        assert main.tabs.active == "gradcam"
        cams = app.query_one(GradcamView)
        gallery = main.detail.galleries[0]
        options = cams.query_one("#cam-list")
        assert options.option_count == 1 + len(gallery["items"])  # the grid, then each image
        assert "gradcam on" in shown(cams.query_one("#cam-caption"))
        options.focus()
        await pilot.press("down")
        await pilot.pause()
        assert gallery["items"][0]["caption"] in shown(cams.query_one("#cam-caption"))
        # the finished Level 1 run has no curves left to draw live, and says which tab is which
        assert {t for t in main.tabs.query("Tab")} and not main.query_one(CurvesView).rate


@aio
async def test_sort_filter_theme_help_and_palette(runs: Path, real: dict[str, Any]) -> None:
    app = app_for(runs, real)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await started(pilot, app)
        keys = app.query_one(KeyBar).items()
        shown_keys = {k for k, _d, _e in keys}
        assert {"space", "n", "c", "r", "m", "/", "s", "g", "w", "1-7", "t", "?", "q",
                "^p"} <= shown_keys
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = plain(app.screen.query_one(Static).content) + "".join(
            plain(w.content) for w in app.screen.query(Static))
        assert "cancel the selected job" in help_text and "Curves, Per-class" in help_text
        await pilot.press("escape")
        assert app.screen is main
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"New job")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main)
        run_list = app.query_one(RunList)
        await pilot.press("s")  # state
        await pilot.press("s")  # accuracy
        assert run_list.sort == "accuracy"
        accs = [r.test_acc for r in run_list.shown]
        assert accs == sorted(accs, reverse=True)
        await pilot.press("slash", "l", "1")
        await pilot.pause()
        assert [r.run_id for r in run_list.shown] == [real["l1"]]
        await pilot.press("enter")  # closes the filter, keeps it
        await pilot.press("escape")  # clears it
        await pilot.pause()
        assert len(run_list.shown) == 2


@aio
async def test_mark_two_runs_overlay_and_compare(runs: Path, real: dict[str, Any]) -> None:
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        await pilot.press("space", "down", "space", "7")
        run_list = app.query_one(RunList)
        labels = sorted(r.label for r in run_list.marked_rows())
        assert len(labels) == 2
        overlay = app.query_one("#view-overlay", OverlayView)
        await until(pilot, lambda: sorted(overlay.series) == labels)
        await pilot.pause()
        text = shown(overlay)
        assert all(label in text for label in labels)
        assert "validation accuracy" in text

        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rows)
        compare = app.screen
        assert sorted(compare.names()) == labels
        table = shown(compare.query_one("#compare-table"))
        assert "Δ vs L1" in table and "+0.00" in table  # Level 1 against itself
        bars = shown(compare.query_one("#compare-bars"))
        assert all(label in bars for label in labels)
        await pilot.press("escape")
        assert app.screen is main


@aio
async def test_submit_a_job_cancel_and_retry_it(runs: Path, real: dict[str, Any]) -> None:
    app = app_for(runs, real)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        # keyboard only: open the level list, pick Level 3, then the fields in order
        await pilot.press("enter", "home", "down", "down", "enter")
        await pilot.press("tab", "0", "tab", "1", "6", "tab", "tab", "tab")  # data: digits
        await pilot.press("ctrl+s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, NewJobScreen)  # refused, as `lab submit --epochs 0` is
        error = shown(dialog.query_one("#job-error"))
        assert "epochs=0: must be between 1 and 10000" in error
        assert JobQueue.open(runs, create=False) is None  # nothing was written
        await pilot.press(*["shift+tab"] * 4, "backspace", "3")  # back to epochs: 3
        await pilot.press(*["tab"] * 5, "2")  # 2 processes (data-parallel: 2 GPUs)
        await pilot.press("tab", "2", "7", "enter")  # priority 27, enter submits
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        with JobQueue.open(runs) as queue:
            [job] = queue.jobs()
        assert job.state == "queued" and job.priority == 27
        assert job.config["nproc"] == 2 and job.slots == 2
        assert (job.config["level"], job.config["epochs"], job.config["image_size"],
                job.config["dataset"]) == (3, 3, 16, "digits")
        await pilot.press("n")  # no worker now, thank you
        run_list = app.query_one(RunList)
        await until(pilot, lambda: any(r.job_id == job.id for r in run_list.shown))
        main = main_screen(app)
        row_index = next(i for i, r in enumerate(run_list.shown) if r.job_id == job.id)
        run_list.table.move_cursor(row=row_index)
        await until(pilot, lambda: main.row is not None and main.row.job_id == job.id)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # asks first
        await pilot.press("y")
        await until(pilot, lambda: JobQueue(runs / "lab.db").get(job.id).state == "cancelled")
        await until(pilot, lambda: main.row.state == "cancelled")
        await pilot.press("r")
        await until(pilot, lambda: JobQueue(runs / "lab.db").get(job.id).state == "queued")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: JobQueue(runs / "lab.db").get(job.id).state == "cancelled")


@aio
async def test_curves_follow_new_lines_without_a_key(runs: Path,
                                                     real: dict[str, Any]) -> None:
    """A run 'in progress': its status says running (this process) and it has one epoch; the
    other epoch arrives while the console watches, and the console's own poll (every 0.5 s)
    draws it, no key pressed. How fast is a figure, not an assertion: see `python -m tui.bench`."""
    run = RunDir(runs / real["l3"])
    lines = run.metrics_path.read_text().splitlines()
    epoch2 = next(i for i, ln in enumerate(lines) if '"epoch":2' in ln and '"event":"epoch"' in ln)
    run.metrics_path.write_text("\n".join(lines[:epoch2]) + "\n")
    run.result_path.unlink()
    shutil.rmtree(run.path / "gradcam")
    status = json.loads(run.status_path.read_text())
    atomic_write_json(run.status_path, {**status, "state": "running", "pid": os.getpid(),
                                        "host": os.uname().nodename})
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        assert main.row.state == "running"
        epochs = app.query_one("#curves-epochs")
        assert "epoch 2/2" in shown(app.query_one("#curves-progress"))
        await pilot.pause(0.5)
        before = shown(epochs)
        assert "2" not in before.split("epoch")[0].splitlines()[-1]  # one epoch on the x axis
        with open(run.metrics_path, "a") as fh:
            fh.write("\n".join(lines[epoch2:epoch2 + 1]) + "\n")
        await until(pilot, lambda: len(main.detail.epochs()) == 2 and shown(epochs) != before,
                    timeout=30)
        assert "img/s" in shown(app.query_one("#curves-progress"))


@aio
async def test_a_corrupt_run_is_marked_and_the_others_still_show(runs: Path,
                                                                 real: dict[str, Any]) -> None:
    broken = RunDir(runs / (real["l1"][:-4] + "bad1"))
    shutil.copytree(runs / real["l1"], broken.path)
    broken.result_path.write_text('{"test_acc": 0.5, "per_cla')  # cut short
    torn = RunDir(runs / (real["l3"][:-4] + "torn"))
    shutil.copytree(runs / real["l3"], torn.path)
    with open(torn.metrics_path, "ab") as fh:
        fh.write(b'{"event":"epoch","epoch":3,"train_l')  # a half-written last line
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        rows = {r.run_id: r for r in app.query_one(RunList).shown}
        assert len(rows) == 4
        assert rows[broken.id].state == "corrupt" and "result.json" in rows[broken.id].error
        assert rows[torn.id].state == "done" and "unreadable" in rows[torn.id].warning
        assert rows[real["l1"]].state == rows[real["l3"]].state == "done"
        assert rows[real["l1"]].test_acc == real["r1"]["test_acc"]
        table = app.query_one(RunList).table
        table.move_cursor(row=[r.run_id for r in app.query_one(RunList).shown].index(broken.id))
        await until(pilot, lambda: main.detail.run_id == broken.id)
        await pilot.press("2")
        await pilot.pause()
        assert "! result.json" in shown(app.query_one("#view-per-class Static"))
        table.move_cursor(row=[r.run_id for r in app.query_one(RunList).shown].index(torn.id))
        await until(pilot, lambda: main.detail.run_id == torn.id)
        await pilot.press("1")
        await pilot.pause()
        assert "unreadable line" in shown(app.query_one("#curves-note"))
        assert len(main.detail.epochs()) == 2  # the complete lines are all there


@aio
async def test_gradcam_key_makes_a_gallery_in_a_worker(runs: Path, real: dict[str, Any],
                                                       tmp_path: Path) -> None:
    shutil.copy2(real["runs"] / real["l3"] / "checkpoint.pt", runs / real["l3"])
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        assert main.detail.run_id == real["l3"]
        before = len(main.detail.galleries)
        await pilot.press("g")
        await until(pilot, lambda: app.screen.__class__.__name__ == "GradcamDialog")
        app.screen.query_one("#n").value = "1"
        await pilot.press("tab", "space", "ctrl+s")  # mistakes only: a second gallery
        await until(pilot, lambda: len(main.detail.galleries) > before, timeout=60)
        names = [g["name"] for g in main.detail.galleries]
        assert any("wrong" in n for n in names), names


@aio
async def test_the_list_fills_from_a_worker_while_the_ui_answers(
        runs: Path, real: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """200 runs are read by a thread worker: while that read is held the screen is up, shows an
    empty list and takes keys; once it is let go, the 200 rows arrive. (The start-up time is a
    figure to watch, not a test: `python -m tui.bench --runs 200` prints it.)"""
    src = runs / real["l3"]
    for i in range(200 - len(list(runs.iterdir()))):
        shutil.copytree(src, runs / f"20250101-{i:06d}-l3-{i:04x}",
                        ignore=shutil.ignore_patterns("gradcam", "checkpoint.pt"))
    assert len(list(runs.iterdir())) == 200
    entered, release = threading.Event(), threading.Event()
    load = RowSource.load
    loaders: set[threading.Thread] = set()

    def held_load(self: RowSource) -> Any:
        loaders.add(threading.current_thread())
        entered.set()
        assert release.wait(60), "the test never let the load go"
        return load(self)

    monkeypatch.setattr(RowSource, "load", held_load)
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await until(pilot, entered.is_set)
            main = main_screen(app)
            run_list = app.query_one(RunList)
            assert app.screen is main and app.ready_rows is None
            assert run_list.table.row_count == 0 and not run_list.shown
            assert "Jobs & runs · newest · 0" in shown(run_list.query_one("#list-title"))
            await pilot.press("s")  # keys are handled while the read is held
            assert run_list.sort == "state"
            await pilot.press("t")
            assert app.theme == "textual-light"
            assert app.ready_rows is None and run_list.table.row_count == 0
        finally:
            release.set()
        await until(pilot, lambda: app.ready_rows is not None
                    and run_list.table.row_count == 200)
        assert app.ready_rows == 200 and len(run_list.shown) == 200
    assert loaders and threading.main_thread() not in loaders  # read off the UI thread


@aio
async def test_the_curves_tab_shows_the_run_s_system_load_under_the_loss(
        runs: Path, real: dict[str, Any]) -> None:
    """The real runs were sampled while they trained (system.jsonl); a run without samples (an
    older one) shows no empty chart."""
    samples = (runs / real["l3"] / "system.jsonl").read_text().splitlines()
    assert samples
    (runs / real["l1"] / "system.jsonl").unlink()
    app = app_for(runs, real)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await started(pilot, app)
        system = app.query_one("#curves-system")
        await until(pilot, lambda: main.detail is not None and main.detail.run_id == real["l3"])
        await until(pilot, lambda: "CPU %" in shown(system))
        assert system.display and len(main.detail.system) == len(samples)
        assert "RSS" in shown(system)
        await pilot.press("down")  # the Level 1 run, made before the Level 3 one
        await until(pilot, lambda: main.detail is not None and main.detail.run_id == real["l1"])
        await pilot.pause()
        assert not system.display

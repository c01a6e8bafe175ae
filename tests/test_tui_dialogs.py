"""The console's dialogs driven by the Pilot on synthetic runs (no training): keys that arrive
in one burst (issue 14, defect 3), the new-job dialog's data set choice and submit-time checks
(defect 4), cloning a run and the remembered last values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Checkbox, Input, Select, Static

import tui.jobs
import tui.keys
from lab.queue import JobQueue
from lab.queue.checks import imagenet_weights_path
from tests.fakes import write_image_tree
from tests.test_submit_checks import cache_set
from tests.test_tui import started, until
from tests.tui_runs import aio, plain, write_run
from tui.app import LabApp, make_app
from tui.screens.gradcam_dialog import GradcamDialog
from tui.screens.main import MainScreen
from tui.screens.new_job import NewJobScreen

pytestmark = pytest.mark.slow  # the console under the Pilot: seconds a test on 2 cores

L3_RUN = "20250301-100000-l3-0c03"
L2_RUN = "20250301-090000-l2-0b02"


@pytest.fixture(autouse=True)
def patient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded CI machine may take seconds over a handler: these tests are about the order
    keys land in, so the limit that keeps a stuck handler from freezing the keyboard is
    raised out of the way (the limit itself has its own test)."""
    monkeypatch.setattr(tui.keys, "KEY_SETTLE_LIMIT_S", 120.0)


@pytest.fixture
def app(lab_dirs: dict[str, Path]) -> LabApp:
    """Two finished runs (the Level 3 one newest, so selected first), nothing cached."""
    write_run(lab_dirs["runs"], L2_RUN, 2, epochs=3, created="2025-03-01T09:00:00+00:00")
    write_run(lab_dirs["runs"], L3_RUN, 3, epochs=4, created="2025-03-01T10:00:00+00:00")
    return make_app(lab_dirs["runs"], lab_dirs["data"], device_probe=lambda: [],
                    refresh_s=3600, poll_s=3600)


async def ready(pilot: Any) -> MainScreen:
    return await started(pilot, pilot.app)


def burst(app: LabApp, *keys: str) -> None:
    """Keys as a terminal delivers one write: all posted before any is handled (the Pilot's
    `press` waits for the app to go idle after each key, which hides the defect)."""
    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)  # what the terminal driver does, key by key


async def settled(pilot: Any) -> None:
    """Every key typed (the app holds none) and the screen idle."""
    await until(pilot, lambda: pilot.app.keys_pending == 0)
    await pilot.pause()


def fields(screen: Any, *ids: str) -> dict[str, Any]:
    return {i: screen.query_one(f"#{i}").value for i in ids}


def queued(runs: Path) -> list[dict]:
    queue = JobQueue.open(runs, create=False, readonly=True)
    if queue is None:
        return []
    with queue:
        return [j.config for j in queue.jobs()]


BURSTS = [  # (keys sent in one write right after the main screen is up, the fields then)
    (["n", "tab", "3", "tab", "1", "6"], {"epochs": "3", "image-size": "16"}),
    (["n", "tab", "1", "2", "tab", "tab", "6", "4", "shift+tab", "4", "8"],
     {"epochs": "12", "image-size": "48", "batch-size": "64"}),
    (["n", "tab", "9", "backspace", "2", "tab", "tab", "tab", "0", ".", "0", "1"],
     {"epochs": "2", "lr": "0.01"}),
    (["n", "enter", "home", "enter", "tab", "7"], {"level": 1, "epochs": "7"}),
]


@pytest.mark.parametrize(("keys", "expected"), BURSTS, ids=[" ".join(b[0]) for b in BURSTS])
@aio
async def test_a_burst_of_keys_opening_the_new_job_dialog_lands_in_its_fields(
        app: LabApp, lab_dirs: dict[str, Path], keys: list[str],
        expected: dict[str, Any]) -> None:
    weights = imagenet_weights_path()  # a Level 1 job passes the submit check
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in")
    async with app.run_test(size=(100, 34)) as pilot:
        await ready(pilot)
        burst(app, *keys)
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        await settled(pilot)
        assert fields(app.screen, *expected) == expected
        burst(app, "ctrl+s", "n")  # submit, then "not now" to the offer of a worker
        await until(pilot, lambda: queued(lab_dirs["runs"]))
        # The `n` answered the offer (not merely: the dialog closed and the offer is to come)
        await settled(pilot)
        assert isinstance(app.screen, MainScreen)
        [config] = queued(lab_dirs["runs"])
        numbers = {"epochs": "epochs", "image-size": "image_size", "batch-size": "batch_size"}
        for field, value in expected.items():
            if field in numbers:
                assert config[numbers[field]] == int(value)
        assert config["dataset"] == "digits"


@pytest.mark.parametrize("answer", ["n", "escape", "enter"])
@aio
async def test_a_key_typed_behind_submit_answers_the_offer_however_slow_the_queue_write(
        app: LabApp, lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        answer: str) -> None:
    """ctrl+s writes the queue in a thread and then offers to start a worker; a key typed
    right behind it must answer the offer, not reach the list (where `n` opens a second
    new-job dialog and enter does nothing). The write is slowed past any scheduling luck."""
    submit = tui.jobs.submit
    started_workers: list[str] = []

    def slow_submit(*args: Any, **kwargs: Any) -> Any:
        import time
        time.sleep(1.0)
        return submit(*args, **kwargs)

    monkeypatch.setattr(tui.jobs, "submit", slow_submit)
    monkeypatch.setattr(MainScreen, "action_start_worker",
                        lambda self: started_workers.append("asked"))
    async with app.run_test(size=(100, 34)) as pilot:
        await ready(pilot)
        burst(app, "n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        await settled(pilot)
        burst(app, "ctrl+s", answer)
        await until(pilot, lambda: queued(lab_dirs["runs"]))
        await settled(pilot)
        assert isinstance(app.screen, MainScreen), app.screen
        assert len(app.screen_stack) == 1  # the list alone: no dialog left open
        assert started_workers == (["asked"] if answer == "enter" else [])
        assert len(queued(lab_dirs["runs"])) == 1


@aio
async def test_a_burst_in_the_grad_cam_dialog_lands_in_its_fields(app: LabApp) -> None:
    async with app.run_test(size=(100, 34)) as pilot:
        main = await ready(pilot)
        assert main.row.run_id == L3_RUN and main.row.state == "done"
        burst(app, "g", "backspace", "7", "tab", "space")
        await until(pilot, lambda: isinstance(app.screen, GradcamDialog))
        await settled(pilot)
        assert app.screen.query_one("#n", Input).value == "7"
        assert app.screen.query_one("#wrong", Checkbox).value is True
        burst(app, "escape", "n", "tab", "5")  # closed, and the next dialog takes the keys
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        await settled(pilot)
        assert app.screen.query_one("#epochs", Input).value == "5"


@aio
async def test_the_data_set_is_chosen_from_what_is_here(app: LabApp,
                                                        lab_dirs: dict[str, Path]) -> None:
    cache_set(lab_dirs["data"], "pets")
    async with app.run_test(size=(100, 34)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dataset = app.screen.query_one("#dataset", Select)
        options = [value for _label, value in dataset._options]
        assert options == ["digits", "pets", "imagefolder:"]
        assert app.screen.query_one("#folder", Input).disabled  # until a folder is chosen
        dataset.value = "pets"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: queued(lab_dirs["runs"]))
        assert queued(lab_dirs["runs"])[0]["dataset"] == "pets"


@aio
async def test_an_image_folder_by_its_path(app: LabApp, lab_dirs: dict[str, Path],
                                           tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_image_tree(tree)
    async with app.run_test(size=(100, 34)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dialog = app.screen
        dialog.query_one("#dataset", Select).value = "imagefolder:"
        await settled(pilot)
        folder = dialog.query_one("#folder", Input)
        assert not folder.disabled
        folder.value = str(tmp_path / "nowhere")
        await pilot.press("ctrl+s")
        await settled(pilot)
        assert app.screen is dialog and queued(lab_dirs["runs"]) == []
        assert "no image folder at" in plain(dialog.query_one("#job-error", Static).content)
        folder.value = str(tree)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: queued(lab_dirs["runs"]))
        assert queued(lab_dirs["runs"])[0]["dataset"] == f"imagefolder:{tree.resolve()}"


REFUSED = [  # (the dialog's level and data set, what the dialog says)
    (2, "digits", "resnet18-f37072fd.pth"),  # ImageNet weights offline, not on disk
    (3, "cifar10", "lab data fetch"),  # a set a clone names that is not cached here
    (3, "digitz", "did you mean 'digits'"),
]


@pytest.mark.parametrize(("level", "dataset", "phrase"), REFUSED)
@aio
async def test_the_dialog_refuses_what_lab_submit_refuses(
        app: LabApp, lab_dirs: dict[str, Path], level: int, dataset: str, phrase: str) -> None:
    """The same engine check as `lab submit`: the dialog stays open, says why, queues
    nothing."""
    async with app.run_test(size=(100, 34)) as pilot:
        main = await ready(pilot)
        main.detail.config = {**main.detail.config, "level": level, "dataset": dataset,
                              "weights": "imagenet", "model": "resnet18" if level < 3 else "cnn"}
        await pilot.press("N")  # a clone of a run that used them
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dialog = app.screen
        assert dialog.query_one("#dataset", Select).value == dataset
        await pilot.press("ctrl+s")
        await settled(pilot)
        assert app.screen is dialog
        error = plain(dialog.query_one("#job-error", Static).content, width=400)
        assert phrase in error, error
        assert queued(lab_dirs["runs"]) == []


@aio
async def test_a_clone_is_the_selected_run_again(app: LabApp, lab_dirs: dict[str, Path],
                                                 ) -> None:
    run_config = json.loads((lab_dirs["runs"] / L2_RUN / "config.json").read_text())
    async with app.run_test(size=(100, 34)) as pilot:
        main = await ready(pilot)
        main.query_one("#table").move_cursor(row=1)
        await until(pilot, lambda: main.row.run_id == L2_RUN and main.detail.key == main.row.key)
        await pilot.press("N")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dialog = app.screen
        assert fields(dialog, "level", "epochs", "image-size", "batch-size", "lr", "nproc",
                      "dataset") == {"level": 2, "epochs": "3", "image-size": "32",
                                     "batch-size": "64", "lr": "0.0001", "nproc": "1",
                                     "dataset": "digits"}
        assert "weights=none" in plain(dialog.query_one("#job-hint", Static).content)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: queued(lab_dirs["runs"]))
        assert queued(lab_dirs["runs"]) == [run_config]  # that run again, field by field


@aio
async def test_the_last_values_are_remembered_across_restarts(
        app: LabApp, lab_dirs: dict[str, Path]) -> None:
    async with app.run_test(size=(100, 34)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        await pilot.press("enter", "home", "down", "down", "enter")  # Level 3
        await pilot.press("tab", "2", "tab", "2", "4", "tab", "tab", "tab", "tab", "tab", "9")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: queued(lab_dirs["runs"]))
    again = make_app(lab_dirs["runs"], lab_dirs["data"], device_probe=lambda: [],
                     refresh_s=3600, poll_s=3600)
    async with again.run_test(size=(100, 34)) as pilot:
        main = await ready(pilot)
        main.query_one("#table").move_cursor(row=1)  # a Level 2 row: the memory still wins
        await pilot.press("n")
        await until(pilot, lambda: isinstance(again.screen, NewJobScreen))
        assert fields(again.screen, "level", "epochs", "image-size", "batch-size", "priority",
                      "dataset") == {"level": 3, "epochs": "2", "image-size": "24",
                                     "batch-size": "", "priority": "9", "dataset": "digits"}


STUDY_ERRORS = [  # (seeds, sweep, study, a phrase of the dialog's one error line)
    ("2", "lrr=1e-3", "", "--sweep lrr: no such config field: did you mean lr?"),
    ("2", "lr=1e-3,20", "s", "grid config 3 of 4 (lr=20), seed 0: lr=20.0: must be in"),
    ("", "lr=1e-3,1e-4", "bad name!", "--study 'bad name!': must be a name"),
    ("0", "", "", "--seeds 0: must be between 1"),
    ("70", "", "", "this grid is 70 jobs, over 64: `lab submit ... --yes`"),
]


@pytest.mark.parametrize(("seeds", "sweep", "study", "phrase"), STUDY_ERRORS)
@aio
async def test_the_dialog_refuses_a_bad_study_in_its_error_line(
        app: LabApp, lab_dirs: dict[str, Path], seeds: str, sweep: str, study: str,
        phrase: str) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dialog = app.screen
        for input_id, value in (("seeds", seeds), ("sweep", sweep), ("study", study)):
            dialog.query_one(f"#{input_id}", Input).value = value
        await pilot.press("ctrl+s")
        await settled(pilot)
        assert app.screen is dialog
        error = plain(dialog.query_one("#job-error", Static).content, width=400)
        assert phrase in error and "\n" not in error.strip(), error
        assert queued(lab_dirs["runs"]) == []


@pytest.mark.parametrize("study", ["tui-grid", ""], ids=["named", "name from the time"])
@aio
async def test_the_dialog_submits_a_2x2_grid_times_2_seeds_as_one_study(
        app: LabApp, lab_dirs: dict[str, Path], study: str) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        dialog = app.screen
        await pilot.press("enter", "home", "down", "down", "enter")  # Level 3
        dialog.query_one("#epochs", Input).value = "1"
        for input_id, value in (("seeds", "2"), ("sweep", "lr=1e-3,1e-4; dropout=0,0.5"),
                                ("study", study)):
            dialog.query_one(f"#{input_id}", Input).value = value
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(queued(lab_dirs["runs"])) == 8)
        with JobQueue.open(lab_dirs["runs"], create=False, readonly=True) as queue:
            jobs = queue.jobs()
        (name,) = {j.study for j in jobs}
        assert name == study if study else name.startswith("study-")
        await until(pilot, lambda: any(f"new study {name}" in n.message
                                       for n in app._notifications))
    assert [(j.config["lr"], j.config["dropout"], j.config["seed"]) for j in jobs] == [
        (lr, dropout, seed) for lr in (1e-3, 1e-4) for dropout in (0.0, 0.5) for seed in (0, 1)]
    assert {(j.config["level"], j.config["epochs"], j.config["dataset"]) for j in jobs} == \
        {(3, 1, "digits")}

"""The console with a real queue and a real detached worker: a job submitted through the dialog,
the worker started from the console's offer, and both still running after the console quits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.queue import JobQueue
from lab.runs import RunDir, pid_alive
from tests.jobtools import gone, processes, wait_for
from tests.tui_runs import aio
from tui.app import make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.new_job import NewJobScreen
from tui.widgets.topbar import TopBar

pytestmark = pytest.mark.slow  # a real worker started from the console


def steps(run: RunDir) -> int:
    return sum(1 for e in run.events() if e.get("event") == "step")


@pytest.fixture
def quiet_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job shares two cores with the tests
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


@aio
async def test_quitting_leaves_the_worker_and_its_job_running(lab_dirs: dict[str, Path],
                                                              quiet_threads: None) -> None:
    runs, data = lab_dirs["runs"], lab_dirs["data"]
    runs.mkdir(parents=True)
    with processes() as procs:
        app = make_app(runs, data, refresh_s=0.3, poll_s=0.25)
        async with app.run_test(size=(100, 30)) as pilot:
            async def until(what: str, condition, timeout: float = 120.0) -> None:
                deadline = time.monotonic() + timeout
                while not condition():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    await pilot.pause(0.1)

            await until("the list", lambda: app.ready_rows is not None)
            await pilot.press("n")
            await until("the dialog", lambda: isinstance(app.screen, NewJobScreen))
            # Level 3 on digits, small batches and many epochs: it runs until we cancel it
            await pilot.press("enter", "end", "enter", "tab", *"200", "tab", *"32", "tab", "8",
                              "ctrl+s")  # the data set: digits, the one this machine has
            await until("the offer of a worker", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            topbar = app.query_one(TopBar)
            await until("a live worker", lambda: topbar.worker_rows)
            with JobQueue.open(runs) as queue:
                [worker] = queue.workers()
                procs.adopt(worker.pid)
                [job] = queue.jobs()
            assert job.config["epochs"] == 200 and job.config["batch_size"] == 8
            await until("the job to train", lambda: (j := JobQueue(runs / "lab.db").get(job.id))
                        .run_id and steps(RunDir(runs / j.run_id)) >= 3)
            await pilot.press("q")
        assert app.return_code == 0
        with JobQueue.open(runs) as queue:
            job = queue.get(job.id)
            assert job.state == "running" and not job.cancel_requested
            assert [w.pid for w in queue.workers() if w.alive] == [worker.pid]
        assert pid_alive(worker.pid) and pid_alive(job.child_pid)
        run = RunDir(runs / job.run_id)
        seen = steps(run)
        wait_for("the job to go on after the console quit", lambda: steps(run) > seen, 60)
        # clean up: cancel the job, stop the worker, wait for both to be gone
        with JobQueue.open(runs) as queue:
            queue.cancel(job.id)
            queue.request_stop(now=True)
        wait_for("the worker to exit", lambda: gone(worker.pid), 60)
        assert JobQueue(runs / "lab.db").get(job.id).state == "cancelled"

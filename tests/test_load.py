"""Load: six processes submit, cancel and list for LAB_LOAD_SECONDS (60 by default; CI sets
fewer) against two real workers running the jobs. Afterwards every job has ended in exactly
one final state, none ran twice, nothing submitted is missing, and the database is intact."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lab.queue import JobQueue
from lab.runs import RunDir, list_runs
from tests.jobtools import env, processes, wait_for

pytestmark = pytest.mark.slow  # a load of client processes against real workers

LOAD_SECONDS = float(os.environ.get("LAB_LOAD_SECONDS", "60"))
FINAL = {"done", "failed", "cancelled"}


def test_six_clients_and_two_workers_leave_every_job_in_one_final_state(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    with JobQueue.open(runs):
        pass  # the database exists before the crowd arrives
    with processes() as procs:
        workers = []
        for n in range(2):  # logs to files: a full pipe would stall a busy worker
            with open(runs / f"worker{n}.out", "w") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "lab", "worker", "--gpus", "cpu", "--poll", "0.05",
                     "--runs-dir", str(runs)], stdout=log, stderr=subprocess.STDOUT, env=env(),
                    start_new_session=True))
            procs.groups.append(workers[-1].pid)
            procs.children.append(workers[-1])
        clients = [subprocess.Popen([sys.executable, "-m", "tests.loadgen", str(runs),
                                     str(LOAD_SECONDS), str(seed)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env(), cwd=Path(__file__).parent.parent)
                   for seed in range(6)]
        reports = []
        for client in clients:
            out, err = client.communicate(timeout=LOAD_SECONDS + 120)
            assert client.returncode == 0, err
            reports.append(json.loads(out))
        # the crowd has gone: cancel what is left and let the workers settle it
        with JobQueue.open(runs) as queue:
            for job in queue.jobs(("queued", "running")):
                if not job.cancel_requested:
                    queue.cancel(job.id)
            wait_for("every job to end", lambda: not queue.jobs(("queued", "running",
                                                                   "interrupted")),
                     timeout=180, every=0.2)
            jobs = queue.jobs()
            for worker in workers:
                assert worker.poll() is None, "a worker died under load"

    submitted = sorted(i for r in reports for i in r["submitted"])
    assert len(submitted) == len(set(submitted)) >= 20, "too little load to mean anything"
    assert sum(r["listed"] for r in reports) >= 20 and sum(len(r["cancelled"]) for r in reports)
    by_id = {j.id: j for j in jobs}
    assert sorted(by_id) == submitted  # nothing lost, nothing invented
    assert {j.state for j in jobs} <= FINAL
    assert [j.id for j in jobs if j.state == "failed"] == [], [j.error for j in jobs]
    assert all(j.attempts <= 1 for j in jobs), "a job was claimed twice"
    ran = [j for j in jobs if j.attempts == 1]
    assert any(j.state == "done" for j in ran), "no job got to run under load"
    # each job that ran has exactly one run, and a done job's run is done
    run_of = {}
    for run in list_runs(runs):
        job_id = run.status().get("job")
        assert job_id not in run_of, f"job {job_id} has two runs"
        run_of[job_id] = run
    for j in ran:
        assert j.run_id is None or RunDir(runs / j.run_id).path == run_of[j.id].path
        if j.state == "done":
            assert run_of[j.id].status()["state"] == "done"
    states = {s: sum(j.state == s for j in jobs) for s in sorted(FINAL)}
    print(f"load {LOAD_SECONDS:g}s: {len(jobs)} jobs {states}, {len(ran)} ran, "
          f"{sum(r['listed'] for r in reports)} listings")
    db = sqlite3.connect(runs / "lab.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

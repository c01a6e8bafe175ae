"""Real worker processes on a real queue database (CPU, digits, tiny models): priority order
under competition, kill -9 and resume, cancel, failures, detaching, stopping."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab.runs import RunDir, list_runs, pid_alive
from tests.jobtools import SLOW, TINY, env, gone, job, lab, lab_json, processes, submit, wait_for

pytestmark = pytest.mark.slow  # real workers and job processes


def events_of(run: RunDir, kind: str) -> list[dict]:
    return [e for e in run.events() if e["event"] == kind]


def in_epoch(run: RunDir, epoch: int) -> bool:
    return any(e["event"] == "step" and e["epoch"] == epoch for e in run.events())


def test_two_workers_run_three_jobs_in_priority_order_each_exactly_once(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    low = submit(runs, *TINY, "--priority", "1")[0]
    high = submit(runs, *TINY, "--priority", "9")[0]
    mid = submit(runs, *TINY, "--priority", "5")[0]
    with processes() as procs:
        workers = [procs.worker(runs, "--exit-when-idle") for _ in range(2)]
        for w in workers:
            assert w.wait(timeout=300) == 0
        logs = "".join(w.stdout.read() for w in workers)
    jobs = [job(runs, i) for i in (low, high, mid)]
    assert [j.state for j in jobs] == ["done"] * 3
    assert [j.attempts for j in jobs] == [1, 1, 1]
    assert [j.id for j in sorted(jobs, key=lambda j: j.started)] == [high, mid, low]
    assert len({j.worker for j in jobs}) == 2  # both workers took jobs
    for i in (low, high, mid):
        assert logs.count(f"job {i} (L3) started") == 1
    # one run per job, each trained once from start to end
    assert sorted(r.id for r in list_runs(runs)) == sorted(j.run_id for j in jobs)
    for j in jobs:
        run = RunDir(runs / j.run_id)
        assert run.status()["state"] == "done" and run.status()["job"] == j.id
        assert [e["epoch"] for e in events_of(run, "epoch")] == [1, 2]
        assert len(events_of(run, "start")) == 1 and len(events_of(run, "test")) == 1


def test_kill_9_mid_epoch_then_a_new_worker_resumes_from_the_checkpoint(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    (job_id,) = submit(runs, *SLOW, "--epochs", "3")
    with processes() as procs:
        first = procs.worker(runs)
        run = RunDir(runs / wait_for("a run", lambda: job(runs, job_id).run_id))
        wait_for("a step of epoch 2", lambda: in_epoch(run, 2), every=0.01)
        child = job(runs, job_id).child_pid
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its job process, no cleanup
        first.wait()
        wait_for("the job process to die", lambda: gone(child))
        # a crash: nothing recorded the end; the records only look stale
        assert job(runs, job_id).state == "running"
        assert run.status()["state"] == "running" and run.live_state() == "interrupted"
        assert torch.load(run.checkpoint_path, weights_only=True)["epoch"] == 1
        (row,) = lab_json("queue", "--runs-dir", str(runs))  # shown as it really is
        assert (row["state"], row["display_state"]) == ("running", "interrupted")

        second = procs.worker(runs, "--exit-when-idle")
        assert second.wait(timeout=300) == 0
        log = second.stdout.read()
    assert f"job {job_id}: its worker died; marked interrupted" in log
    done = job(runs, job_id)
    assert (done.state, done.attempts, done.run_id) == ("done", 2, run.id)
    assert [r.id for r in list_runs(runs)] == [run.id]  # resumed, not restarted elsewhere
    # every completed epoch once, a single start, the resume after epoch 1, one test
    assert [e["epoch"] for e in events_of(run, "epoch")] == [1, 2, 3]
    assert len(events_of(run, "start")) == 1 and len(events_of(run, "test")) == 1
    assert [e["epoch"] for e in events_of(run, "resume")] == [1]
    # no record is corrupt
    lines = run.metrics_path.read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    for name in ("config.json", "status.json", "result.json"):
        json.loads((run.path / name).read_text())
    assert torch.load(run.checkpoint_path, weights_only=True)["epoch"] == 3
    assert run.status()["state"] == "done"
    db = sqlite3.connect(runs / "lab.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    job_log = (runs / "jobs" / f"{job_id}.log").read_text()
    assert "attempt 2" in job_log and f"resumes run {run.id}" in job_log


def test_cancel_queued_and_running_jobs_and_a_failing_job_does_not_stop_the_worker(
        lab_dirs: dict[str, Path], tmp_path: Path) -> None:
    runs = lab_dirs["runs"]
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a state dict")
    (long_id,) = submit(runs, *SLOW, "--epochs", "50", "--priority", "10")
    (queued_id,) = submit(runs, *TINY, "--priority", "5")
    (failing_id,) = submit(runs, *TINY, "--weights", str(garbage), "--priority", "1")
    (last_id,) = submit(runs, *TINY)
    cancelled = lab("cancel", str(queued_id), "--runs-dir", str(runs), check=True)
    assert cancelled.stdout.strip() == f"job {queued_id} cancelled"
    heard = tmp_path / "heard.jsonl"  # what `--on-end` told a script, one line a call
    script = tmp_path / "notify.py"
    script.write_text("import json, os, sys\n"
                      f"with open({str(heard)!r}, 'a') as fh:\n"
                      "    fh.write(json.dumps({k: v for k, v in os.environ.items()"
                      " if k.startswith('LAB_')}) + '\\n')\n"
                      "sys.exit(3)  # a failing notification must not change the job\n")
    with processes() as procs:
        worker = procs.worker(runs, "--exit-when-idle", "--on-end",
                              f"{sys.executable} {script}")
        run = RunDir(runs / wait_for("a run", lambda: job(runs, long_id).run_id))
        wait_for("a checkpoint", run.checkpoint_path.exists)
        stopped = lab("cancel", str(long_id), "--wait", "--runs-dir", str(runs), check=True)
        assert f"job {long_id} cancelled; run {run.id} kept" in stopped.stdout
        assert worker.wait(timeout=300) == 0
        log = worker.stdout.read()
    # the running job stopped cleanly: its run is kept, marked cancelled, and resumable
    assert job(runs, long_id).state == "cancelled"
    assert run.status()["state"] == "cancelled" and run.checkpoint_path.exists()
    assert 1 <= len(events_of(run, "epoch")) < 50 and not events_of(run, "test")
    # the queued one never ran
    never = job(runs, queued_id)
    assert (never.state, never.attempts, never.run_id) == ("cancelled", 0, None)
    # the failing one is failed with its error, and the worker went on to the next
    failed = job(runs, failing_id)
    assert failed.state == "failed" and "cannot be read" in failed.error
    assert f"job {failing_id} failed: weights file" in log
    assert job(runs, last_id).state == "done"
    # one notification per job the worker ran, whatever its end; none for the never-run one
    calls = {int(c["LAB_JOB_ID"]): c for c in map(json.loads, heard.read_text().splitlines())}
    assert len(heard.read_text().splitlines()) == len(calls) == 3
    assert {i: c["LAB_JOB_STATE"] for i, c in calls.items()} == {
        long_id: "cancelled", failing_id: "failed", last_id: "done"}
    done = calls[last_id]
    result = json.loads((runs / done["LAB_RUN_ID"] / "result.json").read_text())
    assert float(done["LAB_TEST_ACC"]) == pytest.approx(result["test_acc"], abs=1e-6)
    assert done["LAB_RUN_DIR"] == str(runs.resolve() / done["LAB_RUN_ID"])
    assert Path(done["LAB_JOB_LOG"]).is_file() and calls[long_id]["LAB_RUN_ID"] == run.id
    assert calls[failing_id]["LAB_TEST_ACC"] == "" and "cannot be read" in \
        calls[failing_id]["LAB_JOB_ERROR"]
    assert log.count("on-end command exited with code 3") == 3


def test_a_detached_worker_outlives_the_shell_that_started_it(lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    with processes() as procs:
        shell = subprocess.run(
            ["bash", "-c", f"'{sys.executable}' -m lab worker --detach --gpus cpu --poll 0.1 "
                           f"--heartbeat 0.5 --runs-dir '{runs}'"],
            capture_output=True, text=True, env=env(), timeout=120)
        assert shell.returncode == 0, shell.stderr
        pid = int(shell.stdout.split("pid ")[1].split(",")[0])
        procs.adopt(pid)
        # the shell is gone; the worker lives on in a session of its own
        assert pid_alive(pid) and os.getsid(pid) == pid != os.getsid(0)
        assert (runs / "workers" / f"worker-{pid}.pid").read_text().strip() == str(pid)
        (status,) = lab_json("worker", "status", "--runs-dir", str(runs))
        assert (status["pid"], status["state"], status["detached"]) == (pid, "running", True)
        log = Path(status["log"])
        assert log.is_file() and log.parent == runs / "workers"

        (first,) = submit(runs, *TINY)
        wait_for("the first job", lambda: job(runs, first).state == "done")
        (second,) = submit(runs, *SLOW, "--epochs", "2")
        wait_for("the second job to start", lambda: job(runs, second).state == "running")
        (third,) = submit(runs, *TINY)
        stop = lab("worker", "stop", "--wait", "--runs-dir", str(runs), check=True)
        assert f"worker pid {pid} exits after its current job" in stop.stdout
        assert gone(pid)
    # it finished what it had started, took nothing new, and cleaned up after itself
    assert job(runs, second).state == "done" and job(runs, third).state == "queued"
    assert not (runs / "workers" / f"worker-{pid}.pid").exists()
    text = log.read_text()
    assert f"job {first} done" in text and f"job {second} done" in text and "exits" in text
    assert "no worker is running" in lab("worker", "status", "--runs-dir", str(runs)).stdout


def test_sigterm_interrupts_and_stop_now_cancels_the_running_job(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    (job_id,) = submit(runs, *SLOW, "--epochs", "50")
    with processes() as procs:
        first = procs.worker(runs)
        run = RunDir(runs / wait_for("a run", lambda: job(runs, job_id).run_id))
        wait_for("a checkpoint", run.checkpoint_path.exists)
        # the job process runs with the slot's CUDA_VISIBLE_DEVICES ('' on the CPU slot)
        environ = Path(f"/proc/{job(runs, job_id).child_pid}/environ").read_bytes()
        assert b"\0CUDA_VISIBLE_DEVICES=\0" in b"\0" + environ
        # SIGTERM (a shutdown): the job is interrupted cleanly, to be resumed later
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 130
        stopped = job(runs, job_id)
        assert (stopped.state, stopped.error) == ("interrupted", "interrupted: stopped by SIGTERM")
        assert run.status()["state"] == "interrupted"
        checkpointed = torch.load(run.checkpoint_path, weights_only=True)["epoch"]

        second = procs.worker(runs)
        wait_for("the resumed job", lambda: job(runs, job_id).attempts == 2 and
                 any(e["event"] == "resume" for e in run.events()))
        assert [e["epoch"] for e in events_of(run, "resume")] == [checkpointed]
        # stop --now: the worker cancels its job (the run is kept) and exits
        lab("worker", "stop", "--now", "--wait", "--runs-dir", str(runs), check=True)
        assert second.wait(timeout=60) == 0
    assert job(runs, job_id).state == "cancelled"
    assert run.status()["state"] == "cancelled" and run.config_path.exists()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_job_process_forked_from_the_warm_template_is_the_worker_s_child_and_dies_alone(
        lab_dirs: dict[str, Path]) -> None:
    """The template has imported torch once; each job process is forked from it, yet it is
    the worker's own child (re-parented: the worker is a subreaper), writes its own log, and
    a kill -9 of it fails that job only: the worker forks the next one from the template."""
    runs = lab_dirs["runs"]
    (long_id,) = submit(runs, *SLOW, "--epochs", "50")
    with processes() as procs:
        worker = procs.worker(runs)
        run = RunDir(runs / wait_for("a run", lambda: job(runs, long_id).run_id))
        wait_for("a step", lambda: in_epoch(run, 1), every=0.01)
        child = job(runs, long_id).child_pid
        assert parent_of(child) == worker.pid
        assert b"lab.entry.template" in Path(f"/proc/{child}/cmdline").read_bytes()
        environ = Path(f"/proc/{child}/environ").read_bytes()
        assert b"\0CUDA_VISIBLE_DEVICES=\0" in b"\0" + environ  # the CPU slot's
        os.kill(child, signal.SIGKILL)
        failed = wait_for("the job to fail", lambda: (j := job(runs, long_id)).state == "failed"
                          and j)
        assert "killed by signal SIGKILL" in failed.error
        (next_id,) = submit(runs, *TINY)
        wait_for("the next job", lambda: job(runs, next_id).state == "done")
        lab("worker", "stop", "--wait", "--runs-dir", str(runs), check=True)
        assert worker.wait(timeout=60) == 0
        log = worker.stdout.read()
    assert log.count("job template warm") == 1 and "fresh interpreter" not in log
    job_log = (runs / "jobs" / f"{next_id}.log").read_text()
    assert f"job {next_id} L3: " in job_log and "test accuracy" in job_log
    assert "Traceback" not in job_log


def test_an_idle_worker_wakes_for_a_submit_before_its_next_poll(
        lab_dirs: dict[str, Path]) -> None:
    """Polls and heartbeats minutes apart: only the wake-up on the queue file's change can
    make it take a job submitted while it sleeps."""
    runs = lab_dirs["runs"]
    with processes() as procs:
        os.environ["LAB_JOB_TEMPLATE"] = "0"  # no template whose warming would wake it
        try:
            worker = procs.worker(runs, poll="600", heartbeat="300")
        finally:
            del os.environ["LAB_JOB_TEMPLATE"]
        wait_for("the worker", lambda: (runs / "workers" / f"worker-{worker.pid}.pid").exists())
        (job_id,) = submit(runs, *TINY)
        wait_for("the job to be done", lambda: job(runs, job_id).state == "done", timeout=240)

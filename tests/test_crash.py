"""Real `lab run` processes stopped the hard ways: SIGTERM and Ctrl-C mid-epoch (a checkpoint
of that very step), kill -9 at assorted moments (at most the current epoch is lost), and an
out-of-memory job that fails alone while its worker goes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.runs import RunDir, checkpoint, list_runs
from tests.jobtools import SLOW, TINY, env, job, lab, processes, submit, wait_for

pytestmark = pytest.mark.slow  # each test kills or interrupts real training processes


def start(runs: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab", "run", *args, "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def the_run(runs: Path) -> RunDir:
    return wait_for("the run directory", lambda: next(iter(list_runs(runs)), None))


def steps_in(run: RunDir, epoch: int) -> int:
    return sum(1 for e in run.events() if e["event"] == "step" and e["epoch"] == epoch)


def assert_each_epoch_once(run: RunDir, epochs: int) -> None:
    events = run.events()
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, epochs + 1))
    assert [e["event"] for e in events].count("start") == 1
    assert [e["event"] for e in events].count("test") == 1
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1)), "steps skipped or counted twice"
    assert run.status()["state"] == "done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_step_saves_it_and_resume_goes_on_from_there(
        lab_dirs: dict[str, Path], sig: int) -> None:
    runs = lab_dirs["runs"]
    proc = start(runs, *SLOW, "--epochs", "2")
    try:
        run = the_run(runs)
        wait_for("10 steps of epoch 2", lambda: steps_in(run, 2) >= 10, every=0.01)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert f"interrupted: checkpoint saved; resume with `lab resume {run.id}`" in stderr
    assert "Traceback" not in stderr
    assert run.status()["state"] == "interrupted"
    saved = checkpoint.read(run.checkpoint_path)
    assert saved["epoch"] == 1 and saved["partial"]["epoch"] == 2
    assert saved["partial"]["batch"] >= 10 and saved["step"] == max(
        e["step"] for e in run.events() if e["event"] == "step")  # no step lost

    resumed = lab("resume", run.id, "--runs-dir", str(runs), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming in epoch 2 at batch {saved['partial']['batch']}" in resumed.stderr
    assert_each_epoch_once(run, 2)
    # the start wrote provenance.json; the resume says who took it over, where
    [resume] = [e for e in run.events() if e["event"] == "resume"]
    made = json.loads((run.path / "provenance.json").read_text())
    assert resume["provenance"]["host"] == made["host"] == socket.gethostname()
    assert resume["provenance"]["torch"] == made["torch"]


def test_kill_9_at_any_moment_loses_at_most_the_current_epoch(
        lab_dirs: dict[str, Path]) -> None:
    """Killed while loading, mid-epoch, and just as an epoch ends (racing its checkpoint)."""
    runs = lab_dirs["runs"]
    args = [*TINY, "--epochs", "4", "--set", "log_every=1", "--batch-size", "16"]
    moments = [
        ("while starting", lambda run: True),
        ("mid-epoch", lambda run: any(e["event"] == "step" for e in run.events()[-3:])),
        ("as an epoch ends", lambda run: (lambda ev: bool(ev) and ev[-1]["event"] == "epoch")(
            run.events())),  # read once: a resume may rewrite the file between two reads
    ]
    proc = start(runs, *args)
    run = the_run(runs)
    for what, moment in moments:
        wait_for(what, lambda m=moment, p=proc: p.poll() is not None or m(run), every=0.002)
        assert proc.poll() is None, f"the run ended before it could be killed {what}"
        epochs_before = [e["epoch"] for e in run.events() if e["event"] == "epoch"]
        proc.kill()
        proc.wait()
        assert run.live_state() == "interrupted"
        on_disk = checkpoint.load_latest(run)
        done = on_disk.state["epoch"] if on_disk else 0
        assert done >= (epochs_before[-1] - 1 if epochs_before else 0)  # lost <= one epoch
        if done:  # best.pt is written before its epoch's checkpoint: whole, at most one ahead
            assert 1 <= checkpoint.read_best(checkpoint.best_path(run))["epoch"] <= done + 1
        proc = subprocess.Popen([sys.executable, "-m", "lab", "resume", run.id, "--runs-dir",
                                 str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env())
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert_each_epoch_once(run, 4)
    epochs = [e for e in run.events() if e["event"] == "epoch"]
    best = max(epochs, key=lambda e: (e["val_acc"], -e["epoch"]))  # the earliest of the best
    saved = checkpoint.read_best(checkpoint.best_path(run))
    assert (saved["epoch"], saved["val_acc"]) == (best["epoch"], best["val_acc"])
    assert run.result()["best_epoch"] == best["epoch"]


# Loaded into the job process only (PYTHONPATH): a GPU that runs out of memory at batch 64.
_OOM_AT_64 = textwrap.dedent("""
    import torch
    _forward = torch.nn.Conv2d.forward

    def forward(self, x):
        if self.training and x.shape[0] >= 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _forward(self, x)

    torch.nn.Conv2d.forward = forward
""")


def test_an_out_of_memory_job_fails_with_a_smaller_batch_to_try_and_the_worker_goes_on(
        lab_dirs: dict[str, Path], tmp_path: Path) -> None:
    runs = lab_dirs["runs"]
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_OOM_AT_64)
    (big,) = submit(runs, *TINY, "--batch-size", "64", "--priority", "5")
    (small,) = submit(runs, *TINY, "--batch-size", "32")
    with processes() as procs:
        os.environ["PYTHONPATH"] = str(inject)
        try:
            worker = procs.worker(runs, "--exit-when-idle")
        finally:
            del os.environ["PYTHONPATH"]
        assert worker.wait(timeout=300) == 0
        log = worker.stdout.read()
    failed, done = job(runs, big), job(runs, small)
    assert failed.state == "failed", log
    assert "out of memory" in failed.error and "batch size 64" in failed.error
    assert "--batch-size 32" in failed.error
    assert RunDir(runs / failed.run_id).status()["state"] == "failed"
    assert done.state == "done", log

"""Data-parallel runs on the CPU: two gloo processes started by torchrun's agent (`--nproc 2`),
compared with one process at the same global batch; a rank killed mid-epoch; a queued job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.runs import RunDir, checkpoint, list_runs
from tests.jobtools import env, job, lab, processes, submit, wait_for

pytestmark = pytest.mark.slow  # gloo process groups and torchrun agents

# 1438 training images, global batch 64: 23 steps an epoch whatever the process count.
ARGS = ["--level", "3", "--dataset", "digits", "--image-size", "16", "--batch-size", "64",
        "--set", "cnn_channels=16,32,32,64", "--set", "cnn_hidden=64", "--set", "lr=2e-3",
        "--set", "log_every=5", "--device", "cpu", "--seed", "3"]
EPOCHS = "6"
# Validation accuracy, absolute, every epoch: 11 of the 179 validation images. Two processes
# see other batches (round-robin shards) and per-process BatchNorm statistics, so the curves
# differ a little; measured here: at most 3.9 points apart (epoch 1), 2.2 at the end.
TOLERANCE = 0.06


def run_cmd(runs: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab", "run", *args, "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def epochs_of(run: RunDir) -> list[dict]:
    return [e for e in run.events() if e["event"] == "epoch"]


def test_two_gloo_processes_match_one_process_and_write_one_set_of_records(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    lab("run", *ARGS, "--epochs", EPOCHS, "--runs-dir", str(runs / "one"), "--json",
        timeout=300, check=True)
    double = lab("run", *ARGS, "--epochs", EPOCHS, "--nproc", "2", "--set", "gradcam=1",
                 "--set", "test_on=best", "--runs-dir", str(runs / "two"), "--json",
                 timeout=600)
    assert double.returncode == 0, double.stderr
    (one,), (two,) = list_runs(runs / "one"), list_runs(runs / "two")
    assert len(list((runs / "two").iterdir())) == 1  # ranks did not make runs of their own
    events = two.events()
    assert [e["event"] for e in events].count("start") == 1
    assert [e["event"] for e in events].count("test") == 1
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == sorted(set(steps)) and max(steps) == 6 * 23  # the same global steps
    result = two.result()
    assert result["world_size"] == 2 and two.config().nproc == 2
    assert result["split"] == one.result()["split"]  # the same split, test set whole
    assert sum(map(sum, result["confusion"])) == result["split"]["test"]
    assert (two.path / "gradcam" / "gradcam" / "index.json").exists()  # rank 0's gallery
    assert checkpoint.read(two.checkpoint_path)["epoch"] == 6
    a, b = epochs_of(one), epochs_of(two)
    assert [e["epoch"] for e in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b, strict=True):
        assert abs(x["val_acc"] - y["val_acc"]) <= TOLERANCE, (x, y)
    assert min(a[-1]["val_acc"], b[-1]["val_acc"]) > 0.9  # both learned
    # rank 0 kept best.pt; every rank tested it
    best = max(b, key=lambda e: (e["val_acc"], -e["epoch"]))["epoch"]
    assert checkpoint.read_best(checkpoint.best_path(two))["epoch"] == best
    assert result["tested"] == {"weights": "best", "epoch": best} and result["best_epoch"] == best
    assert "lab: error" not in double.stderr and "Traceback" not in double.stderr


def test_a_killed_rank_fails_the_run_with_its_error_and_resume_completes(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", *ARGS, "--epochs", "3", "--nproc", "2",
         "--batch-size", "16", "--set", "log_every=1", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env(), "LAB_TEST_LAUNCHER": "kill"}, start_new_session=True)
    try:
        run = wait_for("the run", lambda: next(iter(list_runs(runs)), None))
        wait_for("steps of epoch 2", lambda: any(
            e["event"] == "step" and e["epoch"] == 2 for e in run.events()), timeout=300)
        ranks = wait_for("both ranks", lambda: len(ranks_of_tag("kill")) == 2 and
                         ranks_of_tag("kill"))
        os.kill(ranks[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, stderr
    assert "lab: error: rank 1 of 2 failed" in stderr and "SIGKILL" in stderr
    status = run.status()
    assert status["state"] == "failed" and status["error"].startswith("rank 1: ")
    assert "SIGKILL" in status["error"]
    assert checkpoint.read(run.checkpoint_path)["epoch"] >= 1  # intact
    resumed = lab("resume", run.id, "--runs-dir", str(runs), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert [e["epoch"] for e in epochs_of(run)] == [1, 2, 3]
    assert run.status()["state"] == "done" and run.result()["world_size"] == 2


def ranks_of_tag(tag: str) -> dict[int, int]:
    """rank -> pid of the rank processes started by a launcher run with LAB_TEST_LAUNCHER=tag."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lab.entry.rank" in cmdline and f"LAB_TEST_LAUNCHER={tag}".encode() in environ:
            rank = next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), None)
            if rank is not None:
                found[rank] = int(entry.name)
    return found


def test_a_worker_starts_a_job_only_when_all_its_gpus_are_free(
        lab_dirs: dict[str, Path]) -> None:
    """Two GPU slots (a worker as `--gpus 0,1` makes them; faked here, the jobs run on the CPU):
    the two-process job runs alone on both, then the one-process jobs share them."""
    runs = lab_dirs["runs"]
    common = [*ARGS, "--epochs", "1", "--set", "gradcam=0", "--device", "auto"]
    (wide,) = submit(runs, *common, "--nproc", "2", "--priority", "9")
    narrow = [submit(runs, *common)[0] for _ in range(2)]
    script = ("import sys; from lab.queue.worker import Worker, Slot; "
              "Worker(sys.argv[1], sys.argv[2], [Slot('0', ''), Slot('1', '')], poll=0.1, "
              "exit_when_idle=True).run()")
    proc = subprocess.run([sys.executable, "-c", script, str(runs), str(lab_dirs["data"])],
                          capture_output=True, text=True, env=env(), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    w, a, b = job(runs, wide), job(runs, narrow[0]), job(runs, narrow[1])
    assert [x.state for x in (w, a, b)] == ["done"] * 3, proc.stdout
    assert w.gpu == "0,1" and {a.gpu, b.gpu} == {"0", "1"}
    assert min(a.started, b.started) >= w.finished  # the wide job had both GPUs to itself
    assert max(a.started, b.started) < min(a.finished, b.finished)  # the narrow ones shared


def test_two_torchrun_nodes_meet_at_a_rendezvous_and_make_one_run(
        lab_dirs: dict[str, Path]) -> None:
    """What the README shows for several machines, on one: two `torchrun` agents (one process
    each) meet at a c10d rendezvous and run `lab run` as ranks 0 and 1 of one job; the engine
    reads only torchrun's environment, and both write to one (shared) runs directory."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = lab_dirs["runs"]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
            f"127.0.0.1:{port}", "--rdzv-id", "lab-test", "-m", "lab", "run", *ARGS,
            "--epochs", "2", "--set", "gradcam=0", "--runs-dir", str(runs)]
    logs = [runs.parent / f"node{i}.log" for i in range(2)]
    with processes() as procs:
        nodes = []
        for log in logs:
            with open(log, "w") as out:
                nodes.append(subprocess.Popen(node, stdout=out, stderr=subprocess.STDOUT,
                                              env=env(), start_new_session=True))
                procs.groups.append(nodes[-1].pid)  # killed with its ranks if it hangs
                procs.children.append(nodes[-1])
        try:
            for p in nodes:
                p.wait(timeout=300)
        except subprocess.TimeoutExpired:  # both agents' own words, to say which one hung
            pytest.fail("a torchrun node hung:\n" + "\n".join(
                f"--- node {i}:\n{log.read_text()[-4000:]}" for i, log in enumerate(logs)))
        outputs = [log.read_text() for log in logs]
        assert [p.returncode for p in nodes] == [0, 0], outputs
    (run,) = list_runs(runs)
    assert run.config().nproc == 2 and run.result()["world_size"] == 2
    assert [e["epoch"] for e in epochs_of(run)] == [1, 2]
    assert sum("test accuracy" in out and "details: lab show" in out for out in outputs) == 1


def test_sigterm_to_the_launcher_stops_every_rank_at_one_step_with_a_checkpoint(
        lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", *ARGS, "--epochs", "3", "--nproc", "2",
         "--batch-size", "16", "--set", "log_every=2", "--set", "gradcam=0", "--runs-dir",
         str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        run = wait_for("the run", lambda: next(iter(list_runs(runs)), None))
        wait_for("steps of epoch 2", lambda: any(
            e["event"] == "step" and e["epoch"] == 2 for e in run.events()), timeout=300)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert run.status()["state"] == "interrupted"
    saved = checkpoint.read(run.checkpoint_path)
    assert saved["partial"]["epoch"] == 2 and len(saved["rng_ranks"]) == 2
    assert saved["step"] == max(e["step"] for e in run.events() if e["event"] == "step")
    resumed = lab("resume", run.id, "--runs-dir", str(runs), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert [e["epoch"] for e in epochs_of(run)] == [1, 2, 3]
    steps = [e["step"] for e in run.events() if e["event"] == "step"]
    assert steps == sorted(set(steps))


def test_a_cpu_worker_cancels_a_running_data_parallel_job_then_runs_the_next(
        lab_dirs: dict[str, Path]) -> None:
    """One `lab worker --gpus cpu` (one worker start for both cases): the first two-process job
    is cancelled mid-epoch, the next one then runs to the end on the same worker."""
    runs = lab_dirs["runs"]
    (job_id,) = submit(runs, *ARGS, "--epochs", "20", "--nproc", "2", "--batch-size", "16",
                       "--set", "log_every=2", "--set", "gradcam=0", "--priority", "9")
    (next_id,) = submit(runs, *ARGS, "--epochs", "1", "--nproc", "2", "--set", "gradcam=0")
    with processes() as procs:
        worker = procs.worker(runs, "--exit-when-idle")
        run = RunDir(runs / wait_for("a run", lambda: job(runs, job_id).run_id))
        wait_for("steps of epoch 2", lambda: any(
            e["event"] == "step" and e["epoch"] == 2 for e in run.events()), timeout=300)
        lab("cancel", str(job_id), "--runs-dir", str(runs), check=True)
        assert worker.wait(timeout=300) == 0
        log = worker.stdout.read()
    cancelled = job(runs, job_id)
    assert cancelled.state == "cancelled", cancelled.error
    assert run.status()["state"] == "cancelled"
    # stopped mid-epoch, in the epoch its last step was logged in (epoch 2 when the cancel is
    # seen at once; a loaded machine may take an epoch or two longer to see it)
    saved = checkpoint.read(run.checkpoint_path)
    last = max(e["epoch"] for e in run.events() if e["event"] == "step")
    assert saved["partial"]["epoch"] == last >= 2 and saved["epoch"] == last - 1
    done = job(runs, next_id)
    assert done.state == "done", (log, (runs / "jobs" / f"{next_id}.log").read_text())
    after = RunDir(runs / done.run_id)
    assert after.result()["world_size"] == 2 and after.status()["job"] == next_id

"""The queue commands through the real entry point: submit, queue, cancel, retry, logs, watch,
worker status/stop; one-line refusals that change nothing; 30 s of concurrent submits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab.queue import JobQueue
from tests.jobtools import SLOW, TINY, env, job, lab, lab_json, processes, submit, wait_for


def one_line_error(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: ") and message in lines[0], lines
    assert proc.stdout == ""


def test_submit_prints_job_ids_and_queue_lists_them_in_claim_order(
        lab_dirs: dict[str, Path]) -> None:
    runs = str(lab_dirs["runs"])
    two = lab("submit", *TINY[2:], "--level", "3", "--level", "2", "--weights", "none",
              "--runs-dir", runs, check=True)
    assert two.stdout.splitlines() == [
        "job 1 queued: L3 cnn on digits, 16px, 2 epochs, priority 0",
        "job 2 queued: L2 resnet18 on digits, 16px, 2 epochs, priority 0"]
    assert "no worker is running" in two.stderr
    (urgent,) = lab_json("submit", *TINY, "--priority", "3", "--runs-dir", runs)
    assert (urgent["id"], urgent["state"], urgent["priority"]) == (3, "queued", 3)
    assert urgent["config"]["cnn_channels"] == [8, 16, 16, 32] and urgent["attempts"] == 0
    assert lab("submit", *TINY, "-q", "--runs-dir", runs, check=True).stdout == "4\n"
    listed = lab_json("queue", "--runs-dir", runs)
    assert [r["id"] for r in listed] == [3, 1, 2, 4]  # what workers will take next, first
    assert {r["display_state"] for r in listed} == {"queued"}
    table = lab("queue", "--runs-dir", runs, check=True).stdout
    assert "queued" in table and table.index("   3 ") < table.index("   1 ")


@pytest.mark.slow
def test_bad_submissions_are_one_line_and_write_nothing(lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    cases = [
        (["--level", "3", "--epochs", "0"], 2, "epochs=0"),
        (["--level", "3", "--set", "colour=red"], 2, "unknown config key"),
        (["--level", "1", "--level", "4"], 2, "level 4 does not exist"),
        (["--level", "3", "--device", "cuda:1"], 2, "runs on the GPU its worker gives it"),
        (["--level", "3", "--weights", "/no/such/file.pt"], 3, "does not exist"),
        ([], 2, "choose --level"),
        (["--level", "3", "--priority", "99999999"], 2, "priority"),
    ]
    for args, code, message in cases:  # before any queue exists: none is created
        one_line_error(lab("submit", *args, "--runs-dir", str(runs)), code, message)
    assert not runs.exists()
    submit(runs, *TINY)
    before = lab_json("queue", "--runs-dir", str(runs))
    for args, code, message in cases:  # with a queue: it is left as it was
        one_line_error(lab("submit", *args, "--runs-dir", str(runs)), code, message)
    assert lab_json("queue", "--runs-dir", str(runs)) == before


@pytest.mark.slow
def test_bad_job_references_are_one_line_and_change_nothing(lab_dirs: dict[str, Path]) -> None:
    runs = str(lab_dirs["runs"])
    for command in ("cancel", "retry", "logs", "watch"):
        one_line_error(lab(command, "7", "--runs-dir", runs), 3, "no job 7" if command !=
                       "watch" else "no run '7'")
    assert not lab_dirs["runs"].exists()  # none of them created a queue
    submit(lab_dirs["runs"], *TINY)
    before = lab_json("queue", "--runs-dir", runs)
    for command in ("cancel", "retry", "logs"):
        one_line_error(lab(command, "abc", "--runs-dir", runs), 2, "not a job id")
        one_line_error(lab(command, "../1", "--runs-dir", runs), 2, "not a job id")
        one_line_error(lab(command, "99", "--runs-dir", runs), 3, "no job 99")
    one_line_error(lab("watch", "#99", "--runs-dir", runs), 3, "no job 99")
    one_line_error(lab("retry", "1", "--runs-dir", runs), 2, "job 1 is queued: nothing to retry")
    assert lab_json("queue", "--runs-dir", runs) == before
    # cancel, then the same again: refused, the first one stands
    assert lab("cancel", "#1", "--runs-dir", runs, check=True).stdout == "job 1 cancelled\n"
    one_line_error(lab("cancel", "1", "--runs-dir", runs), 2, "already cancelled")
    assert lab("retry", "1", "--runs-dir", runs, check=True).stdout.startswith(
        "job 1 queued again: its next attempt starts a new run")
    assert job(lab_dirs["runs"], 1).state == "queued"


@pytest.mark.slow
def test_workers_commands_without_workers(lab_dirs: dict[str, Path]) -> None:
    runs = str(lab_dirs["runs"])
    assert lab_json("queue", "--runs-dir", runs) == []
    assert "no worker is running" in lab("worker", "status", "--runs-dir", runs).stdout
    assert lab_json("worker", "status", "--runs-dir", runs) == []
    stop = lab("worker", "stop", "--runs-dir", runs, check=True)
    assert "no worker is running" in stop.stderr
    assert not lab_dirs["runs"].exists()  # readers and no-ops write nothing
    one_line_error(lab("worker", "stop", "--pid", "4242", "--runs-dir", runs), 3, "pid 4242")
    one_line_error(lab("worker", "--gpus", "99", "--runs-dir", runs), 2, "no GPU 99")
    one_line_error(lab("worker", "--gpus", "x", "--runs-dir", runs), 2, "--gpus 'x'")
    assert not lab_dirs["runs"].exists()


@pytest.mark.slow
def test_queue_watch_follows_changes_until_ctrl_c(lab_dirs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    runs = lab_dirs["runs"]
    submit(runs, *TINY)
    out = tmp_path / "watch.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lab", "queue", "--watch", "--json",
                                 "--interval", "0.1", "--runs-dir", str(runs)],
                                stdout=fh, stderr=subprocess.PIPE, text=True, env=env())
    try:
        wait_for("the first table", lambda: '"display_state": "queued"' in out.read_text(),
                 timeout=60)
        lab("cancel", "1", "--runs-dir", str(runs), check=True)
        wait_for("the change", lambda: '"display_state": "cancelled"' in out.read_text(),
                 timeout=60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_watch_and_logs_follow_a_job_and_ctrl_c_leaves_it_alone(
        lab_dirs: dict[str, Path], tmp_path: Path) -> None:
    runs = lab_dirs["runs"]
    (job_id,) = submit(runs, *SLOW, "--epochs", "2")

    def follow(*args: str) -> tuple[subprocess.Popen, Path]:
        path = tmp_path / f"{args[0]}-{len(list(tmp_path.iterdir()))}.out"
        with open(path, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "lab", *args, "--runs-dir", str(runs)],
                                    stdout=fh, stderr=subprocess.PIPE, text=True, env=env())
        followers.append(proc)
        return proc, path

    followers: list[subprocess.Popen] = []
    with processes() as procs:
        try:
            watcher, watched = follow("watch", str(job_id), "--interval", "0.1")
            quitter, _ = follow("watch", str(job_id), "--interval", "0.1")
            tail, tailed = follow("logs", str(job_id), "-f")
            wait_for("the queued job", lambda: "queued" in watched.read_text(), timeout=60)
            worker = procs.worker(lab_dirs["runs"], "--exit-when-idle")
            wait_for("training", lambda: job(runs, job_id).state == "running" and
                     "running on cpu" in watched.read_text())
            quitter.send_signal(signal.SIGINT)  # Ctrl-C: stop watching, the job goes on
            assert quitter.wait(timeout=30) == 0
            assert "stopped watching; job 1 goes on" in quitter.stderr.read()
            assert watcher.wait(timeout=300) == 0
            assert tail.wait(timeout=60) == 0
            assert worker.wait(timeout=60) == 0
        finally:
            for proc in followers:
                proc.kill()
                proc.wait()
                proc.stderr.close()
    done = job(runs, job_id)
    assert done.state == "done"
    text = watched.read_text()
    for needle in (f"job {job_id} · L3 · queued", f"job {job_id} · L3 · running on cpu",
                   "epoch 1/2  train loss", "epoch 2/2  train loss", "accuracy (%)",
                   f"job {job_id} done: test accuracy"):
        assert needle in text, needle
    log = (runs / "jobs" / f"{job_id}.log").read_text()
    assert tailed.read_text() == log and "test accuracy" in log
    assert lab("logs", str(job_id), "--runs-dir", str(runs), check=True).stdout == log
    # a finished run watched by its id: the curves and the result, at once
    again = lab("watch", done.run_id[:15], "--runs-dir", str(runs), check=True).stdout
    assert "accuracy (%)" in again and f"job {job_id} done" in again


@pytest.mark.slow
def test_concurrent_submits_lose_nothing_and_duplicate_nothing(
        lab_dirs: dict[str, Path]) -> None:
    """Four submitters and a reader at once; counted, not timed, so a slow machine only waits."""
    runs = str(lab_dirs["runs"])
    submits_each = 6
    acknowledged: list[tuple[int, str]] = []  # (job id, the note it was submitted with)
    failures: list[str] = []
    reads = [0]
    lock = threading.Lock()

    def submitter(k: int) -> None:
        for i in range(submits_each):
            note = f"p{k}-{i}"
            levels = ["--level", "3"] * (1 + i % 2) + ["--dataset", "digits"]  # 1 or 2 jobs
            proc = lab("submit", *levels, "--set", f"notes={note}", "--json", "--runs-dir", runs)
            with lock:
                if proc.returncode != 0:
                    failures.append(proc.stderr)
                else:
                    acknowledged.extend((j["id"], note) for j in json.loads(proc.stdout))

    def reader() -> None:
        while any(t.is_alive() for t in submitters) or reads[0] < 3:
            proc = lab("queue", "--json", "--all", "--runs-dir", runs)
            with lock:
                if proc.returncode != 0:
                    failures.append(proc.stderr)
                reads[0] += 1

    submitters = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    threads = [*submitters, threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(acknowledged) == 4 * submits_each * 1.5 and reads[0] >= 3
    with JobQueue.open(lab_dirs["runs"]) as queue:
        stored = [(j.id, j.config["notes"]) for j in queue.jobs()]
    # every acknowledged job is stored once, and nothing else is
    assert sorted(stored) == sorted(acknowledged)
    assert len({i for i, _ in stored}) == len(stored)
    per_note = {}
    for _, note in stored:
        per_note[note] = per_note.get(note, 0) + 1
    assert all(count == 1 + int(note.split("-")[1]) % 2 for note, count in per_note.items())


@pytest.mark.parametrize("args", [["--config", "/no/such.json"]])
def test_submit_from_a_missing_config_file(lab_dirs: dict[str, Path], args: list[str]) -> None:
    one_line_error(lab("submit", *args, "--runs-dir", str(lab_dirs["runs"])), 3,
                   "config file /no/such.json does not exist")

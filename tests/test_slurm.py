"""Slurm jobs: the batch script, Slurm's states and their parsing, reconciling the queue with
Slurm, the CLI against stand-in Slurm commands, and an integration test against a real
single-node Slurm (munge, slurmctld, slurmd for localhost, started by `.ci/slurm-up`; skipped,
with the reason, where that cannot start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.levels import level_config
from lab.queue import JobQueue, slurm
from lab.queue.slurm import SlurmOptions, SlurmState
from lab.runs import RunDir
from tests.jobtools import SLOW, TINY, lab, lab_json, wait_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = level_config(3).replace(dataset="digits", image_size=16, epochs=2)


# ---- the batch script -------------------------------------------------------------------------
def test_the_batch_script_runs_the_job_process_under_exec(tmp_path: Path) -> None:
    options = SlurmOptions.checked("gpu,debug", 2, "1-12:00:00", "/data/cache")
    text = slurm.sbatch_script(12, "L3", Path("/shared/runs"), options,
                               python="/opt/venv/bin/python",
                               environ={"LAB_OFFLINE": "1", "TORCH_HOME": "/w/torch", "X": "y"})
    assert text == """\
#!/bin/bash
# lab job 12 (L3), written by `lab submit --slurm`: trains the job's config
# into the runs directory below and records the outcome in its lab.db.
#SBATCH --job-name=lab-12-L3
#SBATCH --output=/shared/runs/jobs/12.log
#SBATCH --open-mode=append
#SBATCH --chdir=/shared/runs
#SBATCH --partition=gpu,debug
#SBATCH --time=1-12:00:00
#SBATCH --gres=gpu:2
export PYTHONUNBUFFERED=1
export LAB_OFFLINE=1
export TORCH_HOME=/w/torch
echo "--- $(date "+%Y-%m-%d %H:%M:%S") job 12 on Slurm job $SLURM_JOB_ID ($(hostname)) ---"
exec /opt/venv/bin/python -m lab.jobrun 12 --slurm --runs-dir /shared/runs --data-dir /data/cache
"""
    cpu = slurm.sbatch_script(3, "my run/1", Path("/r"), SlurmOptions(), python="/p",
                              environ={})
    assert "--gres" not in cpu and "--partition" not in cpu and "--time" not in cpu
    assert "#SBATCH --job-name=lab-3-my_run_1\n" in cpu
    assert "export CUDA_VISIBLE_DEVICES=\n" in cpu  # a CPU job sees no GPU it was not given
    assert "LAB_OFFLINE" not in cpu and cpu.endswith("--runs-dir /r\n")


@pytest.mark.parametrize(("args", "message"), [
    (dict(partition="a b"), "--partition"),
    (dict(partition="x\n#SBATCH --uid=0"), "--partition"),
    (dict(gpus=-1), "--gpus-per-job"),
    (dict(time="2 hours"), "--time"),
    (dict(time="1:00\n"), "--time"),
])
def test_bad_slurm_options_are_refused(args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SlurmOptions.checked(**args)


def test_time_limits_slurm_accepts() -> None:
    for value in ("30", "30:00", "2:00:00", "1-0", "1-12", "1-12:30", "1-12:30:00", "UNLIMITED"):
        assert SlurmOptions.checked(time=value).time == value


def test_paths_a_script_cannot_carry_are_refused() -> None:
    with pytest.raises(ConfigError, match="absolute paths without spaces"):
        slurm.sbatch_script(1, "L3", Path("/my runs"), SlurmOptions(), python="/p", environ={})
    with pytest.raises(ConfigError, match="absolute paths"):
        slurm.check_paths(Path("/r"), SlurmOptions(data_dir="/d/$HOME"), python="/p")


# ---- Slurm's states and output ----------------------------------------------------------------
@pytest.mark.parametrize(("state", "expected"), [
    ("PENDING", "queued"), ("REQUEUED", "queued"), ("CONFIGURING", "queued"),
    ("RUNNING", "running"), ("COMPLETING", "running"), ("SUSPENDED", "running"),
    ("COMPLETED", "done"), ("CANCELLED", "cancelled"),
    ("FAILED", "failed"), ("TIMEOUT", "failed"), ("NODE_FAIL", "failed"),
    ("OUT_OF_MEMORY", "failed"), ("BOOT_FAIL", "failed"), ("PREEMPTED", "failed"),
    ("DEADLINE", "failed"), ("SOMETHING_NEW", None),
])
def test_slurm_states_as_lab_states(state: str, expected: str | None) -> None:
    assert SlurmState("1", state).lab_state == expected


def test_parsing_squeue_sacct_and_sbatch_output() -> None:
    # squeue --noheader --states=all --format=%i|%T|%r, as Slurm 22.05 prints it
    squeue = "5|RUNNING|None\n6|PENDING|Priority\n7|CANCELLED|None\n8_1|COMPLETED|None\n\n"
    assert slurm.parse_squeue(squeue) == {
        "5": SlurmState("5", "RUNNING"), "6": SlurmState("6", "PENDING", "Priority"),
        "7": SlurmState("7", "CANCELLED"), "8_1": SlurmState("8_1", "COMPLETED")}
    # sacct --noheader --parsable2 --format=JobID,State: steps, "by UID", a requeued job twice
    sacct = ("11|CANCELLED by 0\n11.batch|CANCELLED\n12|TIMEOUT\n12.extern|COMPLETED\n"
             "13|NODE_FAIL\n13|COMPLETED\n")
    assert slurm.parse_sacct(sacct) == {
        "11": SlurmState("11", "CANCELLED", source="sacct"),
        "12": SlurmState("12", "TIMEOUT", source="sacct"),
        "13": SlurmState("13", "COMPLETED", source="sacct")}
    assert slurm.parse_sbatch_output("4242\n") == "4242"
    assert slurm.parse_sbatch_output("4242;cluster-a\n") == "4242"
    for bad in ("", "sbatch: error: Batch job submission failed\n", "12a"):
        with pytest.raises(ValueError, match="no job id"):
            slurm.parse_sbatch_output(bad)


# ---- the queue and Slurm's view of it ---------------------------------------------------------
def _job_in_state(queue: JobQueue, state: str, slurm_id: str = "50", cancel: bool = False,
                  run_state: str | None = None, runs: Path | None = None) -> int:
    """A Slurm job as its process would have left it."""
    (job,) = queue.submit([CONFIG], backend="slurm", slurm_options={"gpus": 0})
    queue.set_slurm_id(job.id, slurm_id)
    if state != "queued":
        queue.claim(f"slurm:{slurm_id}", os.getpid(), "cpu", 0, job_id=job.id, backend="slurm")
    if run_state is not None and runs is not None:
        run = RunDir(runs / f"20260101-000000-l3-{job.id:04d}")
        run.path.mkdir(parents=True)
        run.update_status(state=run_state, job=job.id)
        queue.set_run(job.id, 1, run.id)
    if cancel:
        queue.cancel(job.id)
    return job.id


@pytest.mark.parametrize(("slurm_state", "cancel", "run_state", "expected", "error"), [
    ("TIMEOUT", False, None, "failed", "Slurm ended job 50: TIMEOUT"),
    ("OUT_OF_MEMORY", False, None, "failed", "OUT_OF_MEMORY"),
    ("CANCELLED", False, None, "cancelled", None),  # scancel by hand
    ("FAILED", True, None, "cancelled", None),  # killed after lab cancel asked it to stop
    ("COMPLETED", False, "done", "done", None),  # the job's last write was lost
    ("COMPLETED", False, None, "failed", "recorded no outcome"),
    (None, False, "done", "done", None),  # Slurm forgot it: the run record decides
    (None, False, "running", "failed", "Slurm no longer knows job 50"),
    (None, True, None, "cancelled", None),
])
def test_a_job_slurm_ended_takes_slurm_state(
        tmp_path: Path, slurm_state: str | None, cancel: bool, run_state: str | None,
        expected: str, error: str | None) -> None:
    runs = tmp_path / "runs"
    with JobQueue.open(runs) as queue:
        job = queue.get(_job_in_state(queue, "running", cancel=cancel, run_state=run_state,
                                      runs=runs))
        seen = SlurmState("50", slurm_state) if slurm_state else None
        state, why = slurm.settled_state(job, seen, runs) or (None, None)
        assert state == expected
        assert (why is None) if error is None else (error in why)


def test_jobs_slurm_still_runs_or_holds_are_left_alone(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with JobQueue.open(runs) as queue:
        queued = queue.get(_job_in_state(queue, "queued"))
        running = queue.get(_job_in_state(queue, "running", slurm_id="51"))
        for job in (queued, running):
            for state in ("RUNNING", "COMPLETING", "SOMETHING_NEW"):
                assert slurm.settled_state(job, SlurmState("5", state), runs) is None
        assert slurm.settled_state(queued, SlurmState("50", "PENDING"), runs) is None
        # requeued by Slurm (a node failed under it): claimable by its next start
        assert slurm.settled_state(running, SlurmState("51", "PENDING"), runs) == (
            "interrupted", "Slurm requeued job 51")
        # started by Slurm, not yet claimed by its process: shown as running
        assert slurm.display_state(queued, SlurmState("50", "RUNNING")) == "running"
        assert slurm.display_state(running, SlurmState("51", "PENDING")) == "queued"
        assert slurm.display_state(running, None) == "running"


def test_a_settle_never_overwrites_what_the_job_recorded(tmp_path: Path) -> None:
    with JobQueue.open(tmp_path / "runs") as queue:
        job = queue.get(_job_in_state(queue, "running"))
        assert queue.finish(job.id, 1, "done")  # the job's own word, just before Slurm's
        assert not queue.settle(job, "failed", "Slurm ended job 50: FAILED")
        assert queue.get(job.id).state == "done"


# ---- the CLI against stand-in Slurm commands ----------------------------------------------------
FAKE = """#!/bin/sh
# A stand-in for a Slurm command: logs its arguments, answers what the test left for it.
name=$(basename "$0")
echo "$*" >> "$FAKE_SLURM/$name.calls"
[ -f "$FAKE_SLURM/$name.out" ] && cat "$FAKE_SLURM/$name.out"
[ -f "$FAKE_SLURM/$name.err" ] && cat "$FAKE_SLURM/$name.err" >&2
exit "$(cat "$FAKE_SLURM/$name.rc" 2>/dev/null || echo 0)"
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch, squeue, sacct and scancel stand-ins, first on PATH; returns their folder."""
    folder = tmp_path / "fake-slurm"
    folder.mkdir()
    for name in ("sbatch", "squeue", "sacct", "scancel"):
        path = folder / name
        path.write_text(FAKE)
        path.chmod(0o755)
    (folder / "sacct.rc").write_text("1")
    (folder / "sacct.err").write_text("Slurm accounting storage is disabled\n")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(slurm._accounting, "mode", "sacct")
    return folder


def _calls(fake: Path, name: str) -> list[str]:
    path = fake / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_submit_without_sbatch_is_one_line_and_records_nothing(
        lab_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no Slurm here (python is called by its path)
    proc = lab("submit", "--slurm", *TINY, "--runs-dir", str(lab_dirs["runs"]))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        "lab: error: sbatch is not on PATH: this machine cannot reach Slurm (run it on a Slurm "
        "login node, or submit without --slurm for local workers)"]
    assert proc.stdout == "" and not lab_dirs["runs"].exists()
    usage = lab("submit", *TINY, "--partition", "gpu", "--runs-dir", str(lab_dirs["runs"]))
    assert usage.returncode == 2 and "are for --slurm jobs" in usage.stderr


@pytest.mark.slow
def test_submit_queue_cancel_and_retry_through_slurm_commands(
        lab_dirs: dict[str, Path], fake: Path) -> None:
    runs = lab_dirs["runs"]
    (fake / "sbatch.out").write_text("4242;lab\n")
    out = lab("submit", "--slurm", *TINY, "--partition", "lab", "--time", "10",
              "--runs-dir", str(runs), check=True)
    assert out.stdout.startswith("job 1 submitted to Slurm as job 4242: L3 cnn on digits")
    assert "no worker" not in out.stderr
    script = runs.resolve() / "jobs" / "1.sbatch"
    assert _calls(fake, "sbatch") == [f"--parsable {script}"]
    text = script.read_text()
    assert "#SBATCH --partition=lab\n#SBATCH --time=10\n" in text
    assert f"exec {sys.executable} -m lab.jobrun 1 --slurm --runs-dir {runs.resolve()} " \
           f"--data-dir {lab_dirs['data'].resolve()}\n" in text

    (fake / "squeue.out").write_text("4242|PENDING|Priority\n")
    (row,) = lab_json("queue", "--runs-dir", str(runs))
    assert (row["backend"], row["slurm_id"], row["slurm_state"], row["display_state"]) == (
        "slurm", "4242", "PENDING", "queued")
    assert row["slurm_options"]["partition"] == "lab"
    assert _calls(fake, "squeue")[-1] == "--noheader --states=all --jobs=4242 --format=%i|%T|%r"
    table = lab("queue", "--runs-dir", str(runs), check=True).stdout
    assert "Slurm" in table and "4242 PENDING" in table

    assert lab("cancel", "1", "--runs-dir", str(runs), check=True).stdout == "job 1 cancelled\n"
    assert _calls(fake, "scancel") == ["4242"]
    (fake / "squeue.out").write_text("4242|CANCELLED|None\n")
    (row,) = lab_json("queue", "--runs-dir", str(runs))
    assert (row["state"], row["slurm_state"]) == ("cancelled", "CANCELLED")

    (fake / "sbatch.out").write_text("4243\n")
    again = lab("retry", "1", "--runs-dir", str(runs), check=True)
    assert again.stdout == "job 1 queued again (Slurm job 4243): its next attempt starts a " \
                           "new run\n"
    assert (lab_json("queue", "--runs-dir", str(runs))[0]["slurm_id"]) == "4243"


def test_a_job_sbatch_refuses_is_failed_with_its_error(lab_dirs: dict[str, Path],
                                                       fake: Path) -> None:
    (fake / "sbatch.rc").write_text("1")
    (fake / "sbatch.err").write_text("sbatch: error: invalid partition specified: nope\n")
    proc = lab("submit", "--slurm", *TINY, "--partition", "nope", "-q",
               "--runs-dir", str(lab_dirs["runs"]))
    assert proc.returncode == 1 and proc.stdout == "1\n"
    assert proc.stderr.splitlines() == ["lab: error: job 1: sbatch failed: sbatch: error: "
                                        "invalid partition specified: nope"]
    (row,) = lab_json("queue", "--runs-dir", str(lab_dirs["runs"]))
    assert (row["state"], row["slurm_id"]) == ("failed", None)
    assert "invalid partition specified" in row["error"]
    assert _calls(fake, "squeue") == []  # no Slurm id: nothing to ask Slurm


def test_a_listing_asks_slurm_once_and_records_what_it_ended(
        lab_dirs: dict[str, Path], fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = lab_dirs["runs"]
    with JobQueue.open(runs) as queue:
        ids = [_job_in_state(queue, "running", slurm_id=str(60 + i)) for i in range(3)]
        (local,) = queue.submit([CONFIG])
    # 60 still runs, 61 hit its time limit, 62 is gone from squeue and from accounting
    (fake / "squeue.out").write_text("60|RUNNING|None\n61|TIMEOUT|TimeLimit\n")
    (fake / "sacct.out").write_text("")
    rows = {r["id"]: r for r in lab_json("queue", "--runs-dir", str(runs))}
    assert len(_calls(fake, "squeue")) == 1
    assert _calls(fake, "sacct") == [
        "--noheader --parsable2 --jobs=62 --format=JobID,State --allocations",
        "--noheader --parsable2 --jobs=62 --format=JobID,State --completion"]
    assert rows[ids[0]]["display_state"] == "running"
    assert (rows[ids[1]]["state"], rows[ids[1]]["slurm_state"]) == ("failed", "TIMEOUT")
    assert "TIMEOUT (TimeLimit)" in rows[ids[1]]["error"]
    assert rows[ids[2]]["state"] == "failed" and "no longer knows" in rows[ids[2]]["error"]
    assert (rows[local.id]["backend"], rows[local.id]["slurm_state"]) == ("local", None)
    # Slurm cannot be asked: its controller does not answer, or there is no squeue on PATH
    # (CI installs a real Slurm in /usr/bin, which must not be found: PATH holds only the
    # stand-ins and the tools they use). Nothing changes.
    (fake / "squeue.out").write_text("")
    (fake / "squeue.err").write_text("slurm_load_jobs error: Unable to contact slurm "
                                     "controller (connect failure)\n")
    (fake / "squeue.rc").write_text("1")
    rows = {r["id"]: r for r in lab_json("queue", "--runs-dir", str(runs))}
    assert rows[ids[0]]["state"] == "running" and rows[ids[0]]["slurm_state"] is None
    (fake / "squeue").unlink()
    tools = fake.parent / "tools"
    tools.mkdir()
    for tool in ("basename", "cat"):
        (tools / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{tools}")
    rows = {r["id"]: r for r in lab_json("queue", "--runs-dir", str(runs))}
    assert rows[ids[0]]["state"] == "running" and rows[ids[0]]["slurm_state"] is None


def test_a_local_queue_never_calls_slurm(lab_dirs: dict[str, Path], fake: Path) -> None:
    with JobQueue.open(lab_dirs["runs"]) as queue:
        queue.submit([CONFIG])
    assert lab_json("queue", "--runs-dir", str(lab_dirs["runs"]))[0]["backend"] == "local"
    assert "Slurm" not in lab("queue", "--runs-dir", str(lab_dirs["runs"]), check=True).stdout
    assert _calls(fake, "squeue") == [] and _calls(fake, "sbatch") == []


def test_the_console_cancels_through_the_same_engine_call(lab_dirs: dict[str, Path],
                                                          fake: Path) -> None:
    from tui import jobs as tui_jobs
    from tui.model import RowSource

    runs = lab_dirs["runs"]
    with JobQueue.open(runs) as queue:
        job_id = _job_in_state(queue, "running", slurm_id="77")
    (fake / "squeue.out").write_text("77|RUNNING|None\n")
    (row,) = [r for r in RowSource(runs).load().rows if r.job_id == job_id]
    assert (row.state, row.slurm_id, row.slurm_state) == ("running", "77", "RUNNING")
    assert row.matches("slurm 77")
    assert tui_jobs.cancel(runs, job_id).startswith(f"job {job_id} is cancelling")
    assert _calls(fake, "scancel") == ["77"]
    (fake / "squeue.out").write_text("77|CANCELLED|None\n")
    (row,) = [r for r in RowSource(runs).load().rows if r.job_id == job_id]
    assert (row.state, row.slurm_state) == ("cancelled", "CANCELLED")


# ---- a real Slurm ------------------------------------------------------------------------------
def _slurm_answers(env: dict[str, str]) -> bool:
    try:  # ping first: it answers at once, where sinfo waits ~10 s for a controller that is down
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env,
                              timeout=15)
        if "is UP" not in ping.stdout:
            return False
        node = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                              env=env, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return node.stdout.split()[:1] in (["idle"], ["mix"], ["alloc"], ["comp"])


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """The single-node Slurm of `.ci/slurm-up` (its own config, never /etc/slurm): used when
    up, started (and stopped afterwards) when it is installed and we are root, else a skip
    that says why."""
    folder = Path(os.environ.get("LAB_SLURM_DIR", "/tmp/lab-slurm"))
    conf = folder / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf), "LAB_SLURM_DIR": str(folder)}
    started = False
    if not (conf.exists() and _slurm_answers(env)):
        if shutil.which("slurmctld") is None and not Path("/usr/sbin/slurmctld").exists():
            pytest.skip("Slurm is not installed here: run .ci/slurm-up as root (Debian: "
                        "installs munge, slurmctld, slurmd) to run this test")
        if os.geteuid() != 0:
            pytest.skip("starting Slurm needs root: run .ci/slurm-up as root first")
        t0 = time.monotonic()
        up = subprocess.run([str(ROOT / ".ci" / "slurm-up"), "--no-install"], env=env,
                            capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            lines = (up.stderr or up.stdout).strip().splitlines()
            pytest.skip(f"Slurm could not be started here: {lines[-1] if lines else up.returncode}")
        started = True
        print(f"\nslurm started in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        yield conf
    if started:
        subprocess.run([str(ROOT / ".ci" / "slurm-up"), "--stop"], env=env, timeout=60,
                       capture_output=True)


def _squeue(ids: list[str]) -> dict[str, str]:
    out = subprocess.run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}",
                          "--format=%i|%T"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return dict(line.split("|") for line in out.split())


@pytest.mark.slow
def test_jobs_run_and_cancel_on_a_real_slurm(slurm_cluster: Path,
                                             lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    t0 = time.monotonic()
    (quick,) = lab_json("submit", "--slurm", *TINY, "--runs-dir", str(runs))
    # a long one (200 epochs of many small batches: minutes on any machine), cancelled while
    # it runs
    (long,) = lab_json("submit", "--slurm", *SLOW, "--epochs", "200", "--runs-dir", str(runs))
    assert quick["backend"] == long["backend"] == "slurm"
    assert quick["slurm_id"] and long["slurm_id"] and quick["state"] == "queued"

    def rows() -> dict[int, dict]:
        return {r["id"]: r for r in lab_json("queue", "--runs-dir", str(runs))}

    def long_has_steps() -> bool:
        row = rows()[long["id"]]
        assert row["state"] not in ("failed", "done", "cancelled"), row  # it must still run
        if row["state"] != "running" or not row["run_id"]:
            return False
        events = RunDir(runs / row["run_id"]).events()
        return any(e.get("event") == "step" for e in events)

    wait_for("the long job to run under Slurm", long_has_steps, timeout=90, every=0.5)
    running = rows()[long["id"]]
    assert running["slurm_state"] == "RUNNING" == _squeue([long["slurm_id"]])[long["slurm_id"]]
    assert running["worker"] == f"slurm:{long['slurm_id']}"

    cancel = lab("cancel", str(long["id"]), "--wait", "--runs-dir", str(runs), timeout=90,
                 check=True)
    assert cancel.stdout.startswith(f"job {long['id']} cancelled")

    def settled() -> dict[int, dict] | None:
        """Both ended for lab and for Slurm (a cancelled job is COMPLETING a moment first)."""
        now = rows()
        ended = [now[j["id"]]["slurm_state"] in ("COMPLETED", "FAILED", "CANCELLED")
                 and now[j["id"]]["state"] in ("done", "failed", "cancelled")
                 for j in (quick, long)]
        return now if all(ended) else None

    final = wait_for("both jobs to end", settled, timeout=90, every=0.5)
    q, c = final[quick["id"]], final[long["id"]]
    assert (q["state"], q["display_state"], q["error"]) == ("done", "done", None), q
    assert (c["state"], c["display_state"]) == ("cancelled", "cancelled"), c
    # what lab shows is what Slurm says, and what the runs recorded
    slurm_says = _squeue([quick["slurm_id"], long["slurm_id"]])
    assert (q["slurm_state"], c["slurm_state"]) == (
        slurm_says[quick["slurm_id"]], slurm_says[long["slurm_id"]]) == ("COMPLETED", "CANCELLED")
    for row, state in ((q, "done"), (c, "cancelled")):
        status = RunDir(runs / row["run_id"]).status()
        assert (status["state"], status["job"], status["slurm_job"]) == (
            state, row["id"], row["slurm_id"])
    assert q["test_acc"] is not None and c["epoch"] < 20
    assert lab("watch", str(quick["id"]), "--runs-dir", str(runs)).returncode == 0
    assert lab("watch", str(long["id"]), "--runs-dir", str(runs)).returncode == 1
    log = lab("logs", str(long["id"]), "--runs-dir", str(runs), check=True).stdout
    assert f"on Slurm job {long['slurm_id']}" in log and "CANCELLED AT" in log
    # the job completion file (no accounting database here) agrees as well
    completion = subprocess.run(
        ["sacct", "--completion", "--noheader", "--parsable2",
         f"--jobs={quick['slurm_id']},{long['slurm_id']}", "--format=JobID,State"],
        capture_output=True, text=True, timeout=30)
    if completion.returncode == 0 and completion.stdout.strip():
        states = {k: v.state for k, v in slurm.parse_sacct(completion.stdout).items()}
        assert states == {quick["slurm_id"]: "COMPLETED", long["slurm_id"]: "CANCELLED"}
    print(f"\nslurm integration: {time.monotonic() - t0:.1f}s", file=sys.stderr)


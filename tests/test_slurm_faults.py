"""Slurm faults: the time-limit signal, requeues after TIMEOUT and PREEMPTED (bounded and
recorded), and sbatch options passed through without a way to inject a second directive.

Table-driven and property-based where no Slurm is needed (the script text, the requeue
decision, a listing against stand-in Slurm commands, the job process against a stand-in
sbatch); then the real single-node Slurm of `.ci/slurm-up` with a 2-minute limit: the job is
signalled, checkpoints, requeues itself and resumes, every epoch counted once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.errors import ConfigError
from lab.levels import level_config
from lab.queue import JobQueue, slurm
from lab.queue.actions import job_summary
from lab.queue.slurm import SlurmOptions, SlurmState
from lab.runs import RunDir
from tests.cli_inprocess import one_click_command
from tests.jobtools import SLOW, env, lab, lab_json, wait_for
from tests.test_slurm import _calls, _squeue, fake, slurm_cluster  # noqa: F401 - fixtures

CONFIG = level_config(3).replace(dataset="digits", image_size=16, epochs=2)
# A job of many short steps (a step event each): long enough to signal mid-epoch, short enough
# to finish in seconds once resumed.
QUICK = ["--level", "3", "--dataset", "digits", "--image-size", "16", "--batch-size", "8",
         "--epochs", "2", "--set", "cnn_channels=8,16,16,32", "--set", "cnn_hidden=32",
         "--set", "gradcam=0", "--set", "log_every=1", "--device", "cpu"]
# The stand-in sbatch also records the environment it was started with.
SBATCH = """#!/bin/sh
echo "$*" >> "$FAKE_SLURM/sbatch.calls"
env > "$FAKE_SLURM/sbatch.env"
[ -f "$FAKE_SLURM/sbatch.out" ] && cat "$FAKE_SLURM/sbatch.out"
[ -f "$FAKE_SLURM/sbatch.err" ] && cat "$FAKE_SLURM/sbatch.err" >&2
exit "$(cat "$FAKE_SLURM/sbatch.rc" 2>/dev/null || echo 0)"
"""


# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def stand_in() -> Path:
    """The folder of the stand-in Slurm commands of test_slurm's `fake` fixture."""
    return Path(os.environ["FAKE_SLURM"])


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`lab ARGS` in this process (the stand-in Slurm commands are on PATH); its stdout."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    return out


def _queue(capsys: pytest.CaptureFixture[str], runs: Path) -> list[dict]:
    return json.loads(_cli(capsys, "queue", "--json", "--runs-dir", str(runs)))


def _script(options: SlurmOptions) -> str:
    return slurm.sbatch_script(4, "L3", Path("/r"), options, python="/p", environ={})


BASE_LINES = len(_script(SlurmOptions()).splitlines())  # a script with no options


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


# ---- the script: signal lead, named options, pass-through ------------------------------------
@pytest.mark.parametrize(("limit", "seconds", "lead"), [
    (None, None, 120), ("unlimited", None, 120), ("0", None, 120),
    ("1", 60, 15), ("2", 120, 30), ("4", 240, 60), ("8", 480, 120), ("0:40", 40, 10),
    ("1:30", 90, 22), ("1:00:00", 3600, 120), ("1-0", 86400, 120), ("1-2:03", 93780, 120),
    ("1-2:03:04", 93784, 120),
])
def test_the_signal_lead_is_clamped_to_a_quarter_of_a_short_limit(
        limit: str | None, seconds: int | None, lead: int) -> None:
    assert slurm.time_limit_seconds(limit) == seconds
    assert slurm.signal_lead(limit) == lead
    text = _script(SlurmOptions(time=limit, max_requeues=3))
    assert f"#SBATCH --signal=B:USR1@{lead}\n" in text
    # without requeues there is no signal: the job ends at its limit as it always did
    assert "--signal" not in _script(SlurmOptions(time=limit))


def test_named_and_passed_through_options_become_one_directive_each() -> None:
    options = SlurmOptions.checked(
        "gpu", 1, "2:00:00", None, account="proj-7", qos="high", mem="16G", cpus_per_task=4,
        extra=["--constraint=a100|h100", "--exclusive", "--mail-user=a@b.c"], max_requeues=2)
    assert _directives(_script(options))[4:] == [
        "#SBATCH --partition=gpu", "#SBATCH --time=2:00:00", "#SBATCH --gres=gpu:1",
        "#SBATCH --account=proj-7", "#SBATCH --qos=high", "#SBATCH --mem=16G",
        "#SBATCH --cpus-per-task=4", "#SBATCH --signal=B:USR1@120",
        "#SBATCH --constraint=a100|h100", "#SBATCH --exclusive", "#SBATCH --mail-user=a@b.c"]
    # stored with the job and read back alike (retry and requeue write the same script)
    assert SlurmOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    # an own --signal comes after lab's, so sbatch takes it
    own = SlurmOptions.checked(extra=["--signal=B:USR1@600"], max_requeues=1)
    assert _directives(_script(own))[-2:] == ["#SBATCH --signal=B:USR1@120",
                                              "#SBATCH --signal=B:USR1@600"]


@pytest.mark.parametrize(("args", "message"), [
    (dict(extra=["--account=a\n#SBATCH --uid=0"]), "printable ASCII"),
    (dict(extra=["--comment=two words"]), "without blanks"),
    (dict(extra=["--comment=\"x\""]), "quotes"),
    (dict(extra=["--comment=a#b"]), "'#'"),
    (dict(extra=["--comment=a\\b"]), "backslashes"),
    (dict(extra=["--comment=\u00e9t\u00e9"]), "ASCII"),
    (dict(extra=["--comment=a\tb"]), "printable"),
    (dict(extra=["--comment=a\x00"]), "printable"),
    (dict(extra=["-A proj"]), "long form"),
    (dict(extra=["account=proj"]), "long form"),
    (dict(extra=["--"]), "long form"),
    (dict(extra=["--Account=x"]), "long form"),
    (dict(extra=["--output=/tmp/x"]), "lab sets it itself"),
    (dict(extra=["--out=/tmp/x"]), "--output cannot"),  # getopt's abbreviation
    (dict(extra=["--chdir=/"]), "--chdir"),
    (dict(extra=["--job-name=x"]), "--job-name"),
    (dict(extra=["--array=1-3"]), "--array"),
    (dict(extra=["--wrap=ls"]), "--wrap"),
    (dict(extra=["--time=5"]), "use --time"),
    (dict(extra=["--ti=5"]), "use --time"),
    (dict(extra=["--gres=gpu:a100:1"]), "use --gpus-per-job"),
    (dict(extra=["--gpus=2"]), "use --gpus-per-job"),
    (dict(extra=["--account=a"], account="b"), "--account is given twice"),
    (dict(extra=["--partition=a"], partition="b"), "--partition is given twice"),
    (dict(extra=["--qos=a", "--qos=b"]), "--qos is given twice"),
    (dict(extra=["--exclusive"] * 33), "at most 32"),
    (dict(account="a b"), "--account"),
    (dict(account="x\n#SBATCH --uid=0"), "--account"),
    (dict(account="a" * 65), "--account"),
    (dict(qos="q;rm"), "--qos"),
    (dict(mem="16 G"), "--mem"),
    (dict(mem="lots"), "--mem"),
    (dict(mem="16G\n"), "--mem"),
    (dict(cpus_per_task=0), "--cpus-per-task"),
    (dict(cpus_per_task=10**9), "--cpus-per-task"),
    (dict(max_requeues=-1), "--max-requeues"),
    (dict(max_requeues=101), "--max-requeues"),
])
def test_sbatch_options_that_could_break_the_script_are_refused(args: dict,
                                                                message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SlurmOptions.checked(**args)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arg=st.one_of(st.text(max_size=40),
                     st.builds(lambda n, v: f"--{n}={v}", st.from_regex(r"[a-z][a-z-]{0,12}",
                                                                        fullmatch=True),
                               st.text(max_size=30))),
       account=st.one_of(st.none(), st.text(max_size=20)),
       mem=st.one_of(st.none(), st.text(max_size=12)))
def test_no_value_can_add_a_line_or_a_second_option(arg: str, account: str | None,
                                                    mem: str | None) -> None:
    """Whatever the values: refused with a ConfigError, or each becomes exactly one #SBATCH
    line holding exactly one option that sbatch reads as given."""
    try:
        options = SlurmOptions.checked(account=account, mem=mem, extra=[arg])
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    text = _script(options)
    lines = text.splitlines()
    added = [v for v in (account, mem) if v is not None] + [arg]
    assert len(lines) == BASE_LINES + len(added)
    directives = _directives(text)[4:]
    assert directives == [f"#SBATCH --account={account}"] * (account is not None) + \
        [f"#SBATCH --mem={mem}"] * (mem is not None) + [f"#SBATCH {arg}"]
    for line in directives:
        assert re.fullmatch(r"#SBATCH --[a-z][a-z0-9-]*(=[!-~]+)?", line), line
        assert not set(line[8:]) & set("\"'\\# ")


def test_a_record_changed_by_hand_is_checked_again_before_a_script_is_written() -> None:
    with pytest.raises(ConfigError, match="--sbatch-arg"):
        _script(SlurmOptions(extra=("--comment=x\n#SBATCH --uid=0",)))
    for stored, message in (({"gpus": "two"}, "gpus='two' is not a number"),
                            ({"extra": [5]}, "extra=5 is not text"),
                            ({"max_requeues": True}, "max_requeues=True")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            SlurmOptions.from_dict(stored)
    # options of a job recorded before requeues existed: none, as it was submitted
    assert SlurmOptions.from_dict({"partition": None, "gpus": 0}).max_requeues == 0


# ---- the requeue decision --------------------------------------------------------------------
BOUND = 3


@pytest.mark.parametrize("cancel", [False, True])
@pytest.mark.parametrize(("cause", "below", "at_bound"), [
    ("TIMEOUT", "requeue", "exhausted"),
    ("PREEMPTED", "requeue", "exhausted"),
    ("SIGNAL", "requeue", "exhausted"),  # it stopped on the time-limit signal itself
    ("NODE_FAIL", None, None),  # Slurm requeues those itself where the cluster allows it
    ("FAILED", None, None),
    ("OUT_OF_MEMORY", None, None),
    ("CANCELLED", None, None),
    ("COMPLETED", None, None),
    (None, None, None),
])
def test_the_requeue_decision_table(cause: str | None, below: str | None,
                                    at_bound: str | None, cancel: bool) -> None:
    for requeues, expected in ((0, below), (BOUND - 1, below), (BOUND, at_bound),
                               (BOUND + 1, at_bound)):
        got = slurm.requeue_decision(cause, cancel, requeues, BOUND)
        assert got == (None if cancel else expected), (cause, requeues, cancel)
    assert slurm.requeue_decision(cause, False, 0, 0) == (None if below is None else "exhausted")


def _job(queue: JobQueue, state: str = "running", slurm_id: str = "50",
         max_requeues: int = BOUND, requeued: int = 0, error: str | None = None) -> int:
    """A Slurm job as its process would have left it, `requeued` times requeued already."""
    options = {**SlurmOptions(max_requeues=max_requeues).to_dict(),
               "requeued": [{"slurm_id": str(i), "cause": "TIMEOUT"} for i in range(requeued)]}
    (job,) = queue.submit([CONFIG], backend="slurm", slurm_options=options)
    queue.set_slurm_id(job.id, slurm_id)
    if state != "queued":
        claimed = queue.claim(f"slurm:{slurm_id}", os.getpid(), "cpu", 0, job_id=job.id,
                              backend="slurm")
        assert claimed is not None
        if state == "interrupted":
            queue.finish(job.id, claimed.attempts, "interrupted", error=error)
    return job.id


@pytest.mark.parametrize(("state", "error", "seen", "cause"), [
    ("running", None, "TIMEOUT", "TIMEOUT"),
    ("running", None, "PREEMPTED", "PREEMPTED"),
    ("queued", None, "TIMEOUT", "TIMEOUT"),  # killed before its process claimed it
    ("interrupted", "interrupted: stopped by SIGTERM", "TIMEOUT", "TIMEOUT"),
    ("interrupted", slurm.TIME_LIMIT_NOTE + "; no sbatch", "FAILED", "SIGNAL"),
    ("interrupted", slurm.TIME_LIMIT_NOTE + "; no sbatch", "COMPLETED", "SIGNAL"),
    ("interrupted", slurm.TIME_LIMIT_NOTE + "; no sbatch", None, "SIGNAL"),  # forgotten
    ("interrupted", slurm.TIME_LIMIT_NOTE + "; no sbatch", "RUNNING", None),  # still ending
    ("interrupted", slurm.TIME_LIMIT_NOTE + "; no sbatch", "CANCELLED", None),  # scancel
    ("interrupted", "interrupted: stopped by SIGTERM", "FAILED", None),
    ("interrupted", "interrupted: stopped by SIGTERM", "PENDING", None),  # Slurm requeued it
    ("running", None, "NODE_FAIL", None),
    ("running", None, "FAILED", None),
    ("running", None, "CANCELLED", None),
    ("running", None, "COMPLETED", None),
    ("running", None, "RUNNING", None),
    ("running", None, None, None),
])
def test_what_counts_as_a_time_limit_or_preemption(
        tmp_path: Path, state: str, error: str | None, seen: str | None,
        cause: str | None) -> None:
    with JobQueue.open(tmp_path / "runs") as queue:
        job = queue.get(_job(queue, state, error=error))
        assert slurm.requeue_cause(job, SlurmState("50", seen) if seen else None) == cause


# ---- listings requeue what Slurm ended (stand-in Slurm commands) ----------------------------
@pytest.mark.parametrize(("seen", "requeued", "max_requeues", "expected", "message"), [
    ("61|TIMEOUT|TimeLimit", 0, 3, "queued", "requeued 1/3: Slurm job 61 reached its time limit"),
    ("61|PREEMPTED|None", 2, 3, "queued", "requeued 3/3: Slurm job 61 was preempted"),
    ("61|TIMEOUT|TimeLimit", 3, 3, "failed",
     "Slurm ended job 61: TIMEOUT (TimeLimit); not requeued: requeued 3 times already "
     "(--max-requeues 3); `lab retry 1` resumes its run"),
    ("61|PREEMPTED|None", 0, 0, "failed", "not requeued: requeues are off for this job"),
    ("61|NODE_FAIL|None", 0, 3, "failed", "Slurm ended job 61: NODE_FAIL"),
    ("61|FAILED|NonZeroExitCode", 0, 3, "failed", "Slurm ended job 61: FAILED"),
    ("61|CANCELLED|None", 0, 3, "cancelled", None),
    ("61|COMPLETED|None", 0, 3, "failed", "recorded no outcome"),
])
@pytest.mark.usefixtures("fake")
def test_a_listing_requeues_a_job_slurm_ended_by_its_limit_or_a_preemption(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str], seen: str,
        requeued: int, max_requeues: int, expected: str, message: str | None) -> None:
    runs = lab_dirs["runs"]
    with JobQueue.open(runs) as queue:
        job_id = _job(queue, slurm_id="61", max_requeues=max_requeues, requeued=requeued)
    (stand_in() / "squeue.out").write_text(seen + "\n")
    (stand_in() / "sbatch.out").write_text("62\n")
    (row,) = _queue(capsys, runs)
    assert row["state"] == expected, row
    assert (message is None and row["error"] is None) or message in row["error"]
    if expected != "queued":
        assert _calls(stand_in(), "sbatch") == []
        assert row["requeues"] == requeued
        return
    # submitted again at once (the Slurm job that ended is gone: no dependency), recorded
    script = runs.resolve() / "jobs" / f"{job_id}.sbatch"
    assert _calls(stand_in(), "sbatch") == [f"--parsable {script}"]
    assert (row["slurm_id"], row["slurm_state"], row["requeues"], row["max_requeues"]) == (
        "62", None, requeued + 1, max_requeues)
    last = row["slurm_options"]["requeued"][-1]
    assert (last["slurm_id"], last["cause"], last["attempt"]) == ("61", seen.split("|")[1], 1)
    assert message in (runs / "jobs" / f"{job_id}.log").read_text()
    # the table says so, and the next listing asks Slurm about the new job, not the old one
    (stand_in() / "squeue.out").write_text("62|PENDING|Dependency\n")
    table = _cli(capsys, "queue", "--runs-dir", str(runs))
    assert f"62 PENDING requeued {requeued + 1}/{max_requeues}" in table, table
    assert _calls(stand_in(), "squeue")[-1].split()[2] == "--jobs=62"
    assert len(_calls(stand_in(), "sbatch")) == 1


@pytest.mark.usefixtures("fake")
def test_two_listings_at_once_submit_a_requeue_once(lab_dirs: dict[str, Path]) -> None:
    runs = lab_dirs["runs"]
    (stand_in() / "sbatch.out").write_text("62\n")
    with JobQueue.open(runs) as queue:
        job = queue.get(_job(queue, slurm_id="61"))
        seen = {"61": SlurmState("61", "TIMEOUT")}
        # both read the job before either wrote: the second finds it changed and leaves it
        first = slurm.requeue(queue, job, "TIMEOUT", runs)
        second = slurm.requeue(queue, job, "TIMEOUT", runs)
        assert first.state == second.state == "queued" and first.slurm_id == "62"
        assert len(_calls(stand_in(), "sbatch")) == 1
        assert len(slurm.requeue_history(queue.get(job.id))) == 1
        # a cancel pending: never requeued, whatever Slurm says
        other = queue.get(_job(queue, slurm_id="70"))
        queue.cancel(other.id)
        assert not queue.requeue_slurm(other, {}, "x")
        assert slurm.settled_state(queue.get(other.id), seen["61"], runs)[0] == "cancelled"


@pytest.mark.usefixtures("fake")
def test_a_retry_gives_a_job_its_requeues_again(lab_dirs: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    with JobQueue.open(runs) as queue:
        job_id = _job(queue, slurm_id="61", requeued=3)
    (stand_in() / "squeue.out").write_text("61|TIMEOUT|TimeLimit\n")
    (row,) = _queue(capsys, runs)
    assert row["state"] == "failed" and "not requeued" in row["error"]
    (stand_in() / "sbatch.out").write_text("63\n")
    _cli(capsys, "retry", str(job_id), "--runs-dir", str(runs))
    with JobQueue.open(runs) as queue:
        job = queue.get(job_id)
    assert (job.state, job.slurm_id, slurm.requeue_history(job)) == ("queued", "63", [])
    assert slurm.max_requeues(job) == BOUND


# ---- the CLI ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--sbatch-arg", "--account=x\n#SBATCH --uid=0"], "--sbatch-arg '--account=x\\n#SBATCH"),
    (["--sbatch-arg=--output=/tmp/elsewhere"], "--output cannot be passed through"),
    (["--sbatch-arg=-A x"], "long form"),
    (["--account", "a b"], "--account 'a b'"),
    (["--qos", "x\ny"], "--qos 'x\\ny'"),
    (["--mem", "16 GB"], "--mem '16 GB'"),
    (["--cpus-per-task", "0"], "--cpus-per-task 0"),
    (["--cpus-per-task", "9" * 30], "must be between 1 and 4096"),
    (["--max-requeues", "-1"], "--max-requeues -1"),
    (["--max-requeues", "1000"], "--max-requeues 1000"),
    (["--account", "a", "--sbatch-arg=--account=b"], "--account is given twice"),
])
@pytest.mark.usefixtures("fake")
def test_bad_sbatch_options_are_one_line_exit_2_and_write_nothing(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    (stand_in() / "sbatch.out").write_text("1\n")
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--slurm", "--level", "3", "--dataset", "digits", *args,
              "--runs-dir", str(lab_dirs["runs"])])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("lab: error: ") and message in err, err
    assert not lab_dirs["runs"].exists() and _calls(stand_in(), "sbatch") == []


def test_slurm_options_without_slurm_are_refused(lab_dirs: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--level", "3", "--account", "a", "--sbatch-arg=--exclusive",
              "--max-requeues", "0", "--runs-dir", str(lab_dirs["runs"])])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("lab: error: --account, --sbatch-arg, --max-requeues: "
                                       "these options are for --slurm jobs\n")
    assert not lab_dirs["runs"].exists()


@pytest.mark.usefixtures("fake")
def test_submit_passes_the_options_and_the_bound_through(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    (stand_in() / "sbatch.out").write_text("4242\n")
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--slurm", "--level", "3", "--dataset", "digits", "--time", "30",
              "--account", "proj", "--qos", "low", "--mem", "8G", "--cpus-per-task", "2",
              "--sbatch-arg", "--constraint=a100", "--sbatch-arg=--exclusive", "-q",
              "--runs-dir", str(runs)])
    assert exit_.value.code == 0, capsys.readouterr().err
    text = (runs.resolve() / "jobs" / "1.sbatch").read_text()
    assert "\n".join(_directives(text)[4:]) == "\n".join([
        "#SBATCH --time=30", "#SBATCH --account=proj", "#SBATCH --qos=low", "#SBATCH --mem=8G",
        "#SBATCH --cpus-per-task=2", "#SBATCH --signal=B:USR1@120",
        "#SBATCH --constraint=a100", "#SBATCH --exclusive"])
    with JobQueue.open(runs) as queue:
        job = queue.get(1)
    assert slurm.max_requeues(job) == slurm.DEFAULT_MAX_REQUEUES == 3
    assert job_summary(job, runs)["requeues"] == 0
    with pytest.raises(SystemExit):
        main(["submit", "--slurm", "--level", "3", "--dataset", "digits", "--max-requeues",
              "0", "-q",
              "--runs-dir", str(runs)])
    assert "--signal" not in (runs.resolve() / "jobs" / "2.sbatch").read_text()


# ---- the job process and the time-limit signal (stand-in sbatch) ------------------------------
def _slurm_job(runs: Path, max_requeues: int, requeued: int = 0) -> int:
    """A job submitted with `lab submit --slurm` (Slurm job 500), `requeued` times already."""
    (stand_in() / "sbatch").write_text(SBATCH)
    (stand_in() / "sbatch.out").write_text("500\n")
    (out,) = lab_json("submit", "--slurm", *QUICK, "--max-requeues",
                      str(max_requeues), "--runs-dir", str(runs))
    if requeued:
        with JobQueue.open(runs) as queue:
            job = queue.get(out["id"])
            options = {**job.slurm_options,
                       "requeued": [{"slurm_id": "1", "cause": "TIMEOUT"}] * requeued}
            assert queue.requeue_slurm(job, options, "seeded", slurm_id="500")
    (stand_in() / "sbatch.calls").unlink()
    return out["id"]


def _job_process(runs: Path, data: Path, job_id: int, slurm_id: str) -> subprocess.Popen:
    """`python -m lab.jobrun JOB --slurm` as the batch script starts it, as Slurm job
    `slurm_id`, with some of the variables Slurm sets for a job."""
    environ = {**env(), "SLURM_JOB_ID": slurm_id, "SLURM_JOB_NODELIST": "node1",
               "SLURM_CONF": "/etc/slurm/lab-test.conf"}
    return subprocess.Popen([sys.executable, "-m", "lab.jobrun", str(job_id), "--slurm",
                             "--runs-dir", str(runs.resolve()), "--data-dir", str(data)],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _signal_mid_epoch(runs: Path, job_id: int, proc: subprocess.Popen) -> str:
    """SIGUSR1 once the job has trained a few steps; returns what the process printed."""
    def stepping() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        with JobQueue.open(runs) as queue:
            run_id = queue.get(job_id).run_id
        return bool(run_id) and sum(e.get("event") == "step"
                                    for e in RunDir(runs / run_id).events()) >= 3
    wait_for("the job to train a few steps", stepping, timeout=120, every=0.1)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=120)
    return out


def _epochs(run: RunDir) -> list[int]:
    return [e["epoch"] for e in run.events() if e.get("event") == "epoch"]


@pytest.mark.slow
@pytest.mark.usefixtures("fake")
def test_the_time_limit_signal_makes_the_job_requeue_itself_and_resume(
        lab_dirs: dict[str, Path]) -> None:
    runs, data = lab_dirs["runs"], lab_dirs["data"]
    job_id = _slurm_job(runs, max_requeues=3)
    (stand_in() / "sbatch.out").write_text("501\n")
    proc = _job_process(runs, data, job_id, "500")
    out = _signal_mid_epoch(runs, job_id, proc)
    assert proc.returncode == 130, out
    with JobQueue.open(runs) as queue:
        job = queue.get(job_id)
    assert (job.state, job.slurm_id, job.attempts) == ("queued", "501", 1), out
    (entry,) = slurm.requeue_history(job)
    assert (entry["slurm_id"], entry["cause"], entry["attempt"]) == ("500", "SIGNAL", 1)
    assert job.error.startswith("requeued 1/3: Slurm job 500 stopped before its time limit")
    # its next Slurm job waits for this one to end, and inherits none of its Slurm variables
    script = runs.resolve() / "jobs" / f"{job_id}.sbatch"
    assert _calls(stand_in(), "sbatch") == [f"--parsable --dependency=afterany:500 {script}"]
    sbatch_env = (stand_in() / "sbatch.env").read_text().splitlines()
    assert "SLURM_CONF=/etc/slurm/lab-test.conf" in sbatch_env
    assert not [v for v in sbatch_env if v.startswith(("SLURM_JOB_ID=", "SLURM_JOB_NODE"))]
    run = RunDir(runs / job.run_id)
    assert run.status()["state"] == "interrupted" and run.checkpoint_path.exists()
    stopped_at = run.status()["step"]
    assert "requeued 1/3" in out and "Slurm job 501" in out

    # Slurm starts the next job: it claims the job, resumes at that very step and finishes
    second = _job_process(runs, data, job_id, "501")
    out2, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out2
    with JobQueue.open(runs) as queue:
        job = queue.get(job_id)
    assert (job.state, job.attempts, job.error) == ("done", 2, None)
    assert len(slurm.requeue_history(job)) == 1 and f"resuming run {job.run_id}" in out2
    (resume,) = [e for e in run.events() if e.get("event") == "resume"]
    assert resume["step"] == stopped_at
    steps = [(e["epoch"], e["step"]) for e in run.events() if e.get("event") == "step"]
    assert len(steps) == len(set(steps))
    assert run.status()["state"] == "done" and _epochs(run) == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["at the bound", "no sbatch on the node"])
@pytest.mark.usefixtures("fake")
def test_a_job_signalled_at_its_bound_fails_and_one_that_cannot_submit_is_left_to_listings(
        lab_dirs: dict[str, Path], case: str) -> None:
    runs, data = lab_dirs["runs"], lab_dirs["data"]
    at_bound = case == "at the bound"
    job_id = _slurm_job(runs, max_requeues=1, requeued=1 if at_bound else 0)
    if not at_bound:
        (stand_in() / "sbatch.rc").write_text("1")
        (stand_in() / "sbatch.err").write_text("sbatch: error: Batch job submission failed: "
                                         "Submissions from compute nodes are disabled\n")
    proc = _job_process(runs, data, job_id, "500")
    out = _signal_mid_epoch(runs, job_id, proc)
    with JobQueue.open(runs) as queue:
        job = queue.get(job_id)
    run = RunDir(runs / job.run_id)
    assert run.status()["state"] == "interrupted" and run.checkpoint_path.exists()
    if at_bound:
        assert proc.returncode == 1, out
        assert job.state == "failed" and _calls(stand_in(), "sbatch") == []
        assert job.error == ("Slurm job 500 stopped before its time limit with a checkpoint; "
                             "not requeued: requeued 1 time already (--max-requeues 1); "
                             f"`lab retry {job_id}` resumes its run")
        return
    assert proc.returncode == 130, out
    assert job.state == "interrupted" and job.error.startswith(slurm.TIME_LIMIT_NOTE)
    assert "Submissions from compute nodes are disabled" in job.error
    assert "the next `lab queue` does" in job.error
    # the next listing (a login node) sees Slurm job 500 ended, and submits it
    (stand_in() / "sbatch.rc").write_text("0")
    (stand_in() / "sbatch.err").unlink()
    (stand_in() / "sbatch.out").write_text("502\n")
    (stand_in() / "squeue.out").write_text("500|FAILED|NonZeroExitCode\n")
    (row,) = lab_json("queue", "--runs-dir", str(runs))
    assert (row["state"], row["slurm_id"], row["requeues"]) == ("queued", "502", 1), row
    assert slurm.requeue_history(JobQueue.open(runs).get(job_id))[0]["cause"] == "SIGNAL"
    assert _calls(stand_in(), "sbatch")[-1].startswith("--parsable /")  # no dependency: 500 ended


# ---- a real Slurm ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_a_job_longer_than_its_time_limit_is_signalled_requeued_and_resumed(
        lab_dirs: dict[str, Path]) -> None:
    """2 minutes of limit: SIGUSR1 30 s before it (Slurm sends it 30-60 s early), the job
    checkpoints mid-epoch, submits its next Slurm job and exits; that one resumes the run.
    The job has far more epochs than fit, so it is cancelled once the resumed attempt has
    finished an epoch: what is checked is that the requeue happened and lost nothing."""
    runs = lab_dirs["runs"]
    t0 = time.monotonic()
    # 500 epochs: far more than 2 minutes hold however fast the machine (30 finished in 90 s
    # on an idle one, so the job was done before its limit came)
    (sub,) = lab_json("submit", "--slurm", *SLOW, "--epochs", "500", "--time", "2",
                      "--max-requeues", "5", "--runs-dir", str(runs))
    first = sub["slurm_id"]
    script = (runs / "jobs" / f"{sub['id']}.sbatch").read_text()
    assert "#SBATCH --time=2\n#SBATCH --signal=B:USR1@30\n" in script

    def row() -> dict:
        (r,) = lab_json("queue", "--runs-dir", str(runs))
        assert r["state"] not in ("failed", "done", "cancelled"), r
        return r

    def resumed_an_epoch() -> dict | None:
        r = row()
        if not r["requeues"] or r["slurm_id"] == first or r["state"] != "running":
            return None
        run = RunDir(runs / r["run_id"])
        resumes = [i for i, e in enumerate(run.events()) if e.get("event") == "resume"]
        after = [e for e in run.events()[resumes[-1]:] if e.get("event") == "epoch"] \
            if resumes else []
        return r if after else None

    r = wait_for("a requeue and an epoch after it", resumed_an_epoch, timeout=420, every=2)
    history = r["slurm_options"]["requeued"]
    assert history[0]["slurm_id"] == first and history[0]["cause"] in ("SIGNAL", "TIMEOUT")
    assert r["attempts"] == len(history) + 1 and r["worker"] == f"slurm:{r['slurm_id']}"
    # Slurm's view: the first job ended (it exited 130 after its checkpoint), the new one runs
    states = _squeue([first, r["slurm_id"]])
    assert states[r["slurm_id"]] == "RUNNING" and states[first] in ("FAILED", "TIMEOUT")
    log = lab("logs", str(sub["id"]), "--runs-dir", str(runs), check=True).stdout
    assert f"on Slurm job {first}" in log and f"on Slurm job {r['slurm_id']}" in log
    assert f"requeued 1/5: Slurm job {first}" in log and "resumes run" in log

    lab("cancel", str(sub["id"]), "--wait", "--runs-dir", str(runs), timeout=120, check=True)
    run = RunDir(runs / r["run_id"])
    epochs = _epochs(run)
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 1, epochs
    steps = [(e["epoch"], e["step"]) for e in run.events() if e.get("event") == "step"]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    assert run.status()["state"] == "cancelled"
    print(f"\nslurm requeue: {len(history)} requeue(s), {len(epochs)} epochs, "
          f"{time.monotonic() - t0:.0f}s", file=sys.stderr)

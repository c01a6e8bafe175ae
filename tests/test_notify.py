"""`--on-end` commands on their own: what reaches them, and that whatever they do (fail, be
missing, hang) is one logged line and never blocks or changes anything (real subprocesses)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import pytest

from lab.queue import JobQueue
from lab.queue.notify import EndHooks, end_environment
from tests.tui_runs import write_run

RUN = "20250301-100000-l3-0c03"


_seeds = itertools.count()


def ended_job(runs: Path, state: str, run_id: str | None = RUN) -> object:
    """A job of study s1 as the queue holds it (each with its own seed: a study never holds
    one config twice), in `state`."""
    from lab.levels import level_config

    config = level_config(3).replace(dataset="digits", study="s1", seed=next(_seeds))
    with JobQueue.open(runs) as queue:
        [job] = queue.submit([config])
    return dataclasses.replace(job, state=state, run_id=run_id,
                               error="RunFailed: loss is nan" if state == "failed" else None)


def test_the_environment_names_the_job_and_its_result(tmp_path: Path) -> None:
    write_run(tmp_path, RUN, 3, final_acc=0.9)
    done = end_environment(ended_job(tmp_path, "done"), tmp_path)
    assert done["LAB_JOB_STATE"] == "done" and done["LAB_RUN_ID"] == RUN
    assert float(done["LAB_TEST_ACC"]) == pytest.approx(0.89)
    assert done["LAB_STUDY"] == "s1" and done["LAB_RUN_DIR"] == str(tmp_path / RUN)
    failed = end_environment(ended_job(tmp_path, "failed"), tmp_path)
    assert failed["LAB_TEST_ACC"] == "" and failed["LAB_JOB_ERROR"] == "RunFailed: loss is nan"
    never = end_environment(ended_job(tmp_path, "cancelled", None), tmp_path)
    assert never["LAB_RUN_ID"] == never["LAB_RUN_DIR"] == ""


@pytest.mark.parametrize(("command", "logged"), [
    ("exit 0", []),
    ("exit 4", ["on-end command exited with code 4"]),
    ("no-such-command-for-lab-tests", ["on-end command not found (exit 127)"]),
    ("kill -9 $$", ["on-end command killed by signal 9"]),
])
def test_an_outcome_is_one_logged_line(tmp_path: Path, command: str,
                                       logged: list[str]) -> None:
    said: list[str] = []
    hooks = EndHooks(command, tmp_path, said.append)
    hooks.job_ended(ended_job(tmp_path, "done"))
    hooks.drain(30)
    assert [line.split(": ", 1)[1] for line in said] == logged
    assert not hooks.pending


def test_a_hanging_command_does_not_hold_the_worker_and_is_stopped(tmp_path: Path) -> None:
    said: list[str] = []
    hooks = EndHooks("sleep 600", tmp_path, said.append, timeout=0.5)
    hooks.job_ended(ended_job(tmp_path, "done"))  # returns at once: the command is running
    assert len(hooks.pending) == 1 and said == []
    pid = next(iter(hooks.pids))
    while hooks.pending:
        hooks.poll()
        time.sleep(0.05)
    assert said and "stopped after 0.5 s" in said[0]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_job_data_reaches_the_command_only_as_environment(tmp_path: Path) -> None:
    """A label or error with shell syntax in it is data, never code."""
    out = tmp_path / "out.json"
    hooks = EndHooks(f"{sys.executable} -c \"import json,os;open({str(out)!r},'w').write("
                     "json.dumps(os.environ['LAB_JOB_ERROR']))\"", tmp_path, print)
    job = dataclasses.replace(ended_job(tmp_path, "failed"),
                              error="$(touch pwned); `touch pwned2`")
    hooks.job_ended(job)
    hooks.drain(30)
    assert json.loads(out.read_text()) == job.error
    assert not (tmp_path / "pwned").exists() and not Path("pwned2").exists()

"""Naming a run (issue 14, defect 11): the short names the console shows (`L3 145d`) and any
unique prefix or suffix of an id are accepted wherever a run is named, by `resolve_run` and
through every command that takes a run; anything else is one line and a non-zero exit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import ConfigError, ExitCode, NotFoundError
from lab.runs import resolve_run
from tests.cli_inprocess import one_click_command
from tests.tui_runs import write_run

IDS = {"l1": "20250301-090000-l1-0a01", "l2": "20250301-093000-l2-0b02",
       "l3": "20250301-100000-l3-145d", "l3b": "20250302-100000-l3-245d"}

FOUND = [  # (ref, the run it names)
    (IDS["l2"], "l2"),  # the full id
    ("20250301-0930", "l2"),  # a prefix
    ("145d", "l3"),  # a suffix: what the console shows after the level
    ("L3 145d", "l3"),  # the console's name, as shown
    ("l3-145d", "l3"),  # ...as it is spelled in the id
    ("L3 145D", "l3"),  # any case
    ("  L1 0a01 ", "l1"),  # pasted with spaces around it
    ("0a01\n", "l1"),
    ("latest", "l3b"),
]
REFUSED = [  # (ref, error, exit code, text the one line must hold)
    ("45d", ConfigError, ExitCode.USAGE, "ambiguous"),  # ends both Level 3 runs
    ("2025", ConfigError, ExitCode.USAGE, "ambiguous"),  # starts them all
    ("L1 145d", NotFoundError, ExitCode.NOT_FOUND, "no run"),  # 145d is not a Level 1 run
    ("nope", NotFoundError, ExitCode.NOT_FOUND, "no run"),
    ("", ConfigError, ExitCode.USAGE, "not a run id"),
    ("   ", ConfigError, ExitCode.USAGE, "not a run id"),
    ("../x", ConfigError, ExitCode.USAGE, "not a run id"),
    ("/etc", ConfigError, ExitCode.USAGE, "not a run id"),
    ("145d/../../x", ConfigError, ExitCode.USAGE, "not a run id"),
    ("ré", ConfigError, ExitCode.USAGE, "not a run id"),
    ("L3 １４５d", ConfigError, ExitCode.USAGE, "not a run id"),  # full-width digits
    ("0a01\nx", ConfigError, ExitCode.USAGE, "not a run id"),
    ("#12", ConfigError, ExitCode.USAGE, "that is a job"),
]


# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared: every test checks that it left the runs as they were."""
    runs = tmp_path_factory.mktemp("refs") / "runs"
    for key, run_id in IDS.items():
        write_run(runs, run_id, int(key[1]), final_acc=0.9)
    return runs


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("ref", "key"), FOUND)
def test_resolve_run_finds(runs: Path, ref: str, key: str) -> None:
    assert resolve_run(runs, ref).id == IDS[key]


@pytest.mark.parametrize(("ref", "error", "code", "text"), REFUSED)
def test_resolve_run_refuses(runs: Path, ref: str, error: type, code: int, text: str) -> None:
    with pytest.raises(error, match=text) as caught:
        resolve_run(runs, ref)
    assert "\n" not in str(caught.value)
    if text == "ambiguous":  # the candidates are named, so the user can pick one
        expected = [i for i in IDS.values() if i.startswith(ref.strip()) or i.endswith(ref)]
        assert all(run_id in str(caught.value) for run_id in expected), caught.value


def test_a_missing_runs_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        resolve_run(tmp_path / "typo", "145d")


# Every command that takes a run: argv with RUN in place of the ref; a command that cannot go
# on with these synthetic runs (no checkpoint, no gallery, already done) still names the run it
# found, which is what is checked here.
COMMANDS = {
    "show": ["show", "RUN", "--json"],
    "resume": ["resume", "RUN"],
    "gradcam": ["gradcam", "RUN"],
    "gradcam show": ["gradcam", "show", "RUN"],
    "compare": ["compare", "RUN", "--json"],
    "report": ["report", "RUN", "--json", "-o", "OUT"],
    "watch": ["watch", "RUN"],
}


def _lab(argv: list[str], ref: str, runs: Path, out: Path,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = [ref if a == "RUN" else str(out) if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--runs-dir", str(runs)])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


# resolve_run meets the whole table above; each command is shown to go through it with every
# name for `show` and a sample for the others (the whole product took minutes on 2 cores).
SAMPLE_FOUND = {"145d", "L3 145d", "latest"}
SAMPLE_REFUSED = {"45d", "nope", "../x", "#12"}


@pytest.mark.slow  # the commands in process, but some import torch or matplotlib
@pytest.mark.parametrize(("command", "ref", "key"), [
    (command, ref, key) for command in COMMANDS for ref, key in FOUND
    if command == "show" or ref in SAMPLE_FOUND and (command != "report" or ref != "latest")])
def test_every_command_takes_the_names(runs: Path, tmp_path: Path, command: str, ref: str,
                                       key: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree(runs)
    code, stdout, stderr = _lab(COMMANDS[command], ref, runs, tmp_path / "report", capsys)
    assert IDS[key] in stdout + stderr, (code, stdout, stderr)
    assert "no run" not in stderr and "ambiguous" not in stderr and "not a run id" not in stderr
    for other in set(IDS.values()) - {IDS[key]}:
        assert other not in stdout + stderr
    if command != "report":
        assert tree(runs) == before


@pytest.mark.slow
@pytest.mark.parametrize(("command", "ref", "error", "code", "text"), [
    (command, *refused) for command in COMMANDS for refused in REFUSED
    if command == "show" or refused[0] in SAMPLE_REFUSED])
def test_every_command_refuses_in_one_line(runs: Path, tmp_path: Path, command: str, ref: str,
                                           error: type, code: int, text: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if command == "watch" and ref == "#12":  # `lab watch` follows jobs too: #12 is one
        code, text = ExitCode.NOT_FOUND, "no job 12"
    before = tree(runs)
    got, stdout, stderr = _lab(COMMANDS[command], ref, runs, tmp_path / "report", capsys)
    assert got == code, (got, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("lab: error: ") and text in stderr, \
        stderr
    assert stdout == ""
    assert tree(runs) == before and not (tmp_path / "report").exists()

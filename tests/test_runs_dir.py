"""A runs directory that is not there or cannot be written (issue 14, defect 13): readers warn
instead of showing an empty list, nothing is created by looking, and a submit into a directory
that cannot take it is one line naming the directory and the problem, in the CLI and the
console. Permission cases run in children without capabilities, so they hold for root too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import Notify

from lab.cli import main
from lab.errors import ExitCode, StorageError
from lab.runs import writable_dir
from tests.cli_inprocess import one_click_command
from tests.readonly import run_without_capabilities
from tests.tui_runs import fixed_devices
from tui.app import make_app

# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def _lab(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def _missing(tmp: Path) -> Path:
    return tmp / "typo"


def _a_file(tmp: Path) -> Path:
    (tmp / "runs.txt").write_text("not a directory\n")
    return tmp / "runs.txt"


UNREADABLE = {"missing": (_missing, "does not exist"), "a file": (_a_file, "is not a directory")}
READERS = [  # argv, exit code
    (["runs"], ExitCode.OK), (["compare"], ExitCode.OK), (["queue"], ExitCode.OK),
    (["runs", "--json"], ExitCode.OK), (["show", "145d"], ExitCode.NOT_FOUND),
    (["report"], ExitCode.NOT_FOUND), (["watch", "145d"], ExitCode.NOT_FOUND),
]


@pytest.mark.parametrize("case", UNREADABLE)
@pytest.mark.parametrize(("argv", "code"), READERS, ids=[" ".join(r[0]) for r in READERS])
def test_readers_say_the_runs_directory_is_not_there(tmp_path: Path, case: str, argv: list[str],
                                                     code: int,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    make, problem = UNREADABLE[case]
    runs = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    got, _, stderr = _lab(capsys, *argv, "--runs-dir", str(runs))
    assert got == code, stderr
    assert f"runs directory {runs} {problem}" in stderr, stderr
    assert sorted(tmp_path.rglob("*")) == before  # looking creates nothing


@pytest.mark.slow  # the console under the Pilot
@pytest.mark.parametrize("case", UNREADABLE)
def test_the_console_says_the_runs_directory_is_not_there(tmp_path: Path, case: str) -> None:
    make, problem = UNREADABLE[case]
    runs = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    seen: list[Any] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            seen.append(message.notification)

    async def look() -> None:
        app = make_app(runs, tmp_path / "data", device_probe=fixed_devices, refresh_s=0.5)
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            while app.ready_rows is None:
                await pilot.pause(0.05)

    asyncio.run(look())
    warnings = [n for n in seen if n.severity == "warning" and str(runs) in n.message]
    assert len(warnings) == 1 and problem in warnings[0].message, seen
    assert sorted(tmp_path.rglob("*")) == before


# ---- writing: lab submit and the console's submit ------------------------------------------
def _read_only(tmp: Path) -> Path:
    (tmp / "runs").mkdir()
    (tmp / "runs").chmod(0o555)
    return tmp / "runs"


def _in_read_only_parent(tmp: Path) -> Path:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return tmp / "ro" / "runs"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x\n")
    return tmp / "plain" / "runs"


UNWRITABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "read-only": (_read_only, "runs directory {runs} is not writable (permission denied)"),
    "read-only parent": (_in_read_only_parent, "cannot create runs directory {runs}: {tmp}/ro "
                                               "is not writable (permission denied)"),
    "under a file": (_under_a_file, "cannot create runs directory {runs}: {tmp}/plain is not "
                                    "a directory"),
    "a file": (_a_file, "runs directory {runs} is not a directory"),
}


@pytest.fixture
def unwritable(tmp_path: Path) -> Any:
    made: dict[str, tuple[Path, str]] = {}
    for case, (make, text) in UNWRITABLE.items():
        tmp = tmp_path / case.replace(" ", "-")
        tmp.mkdir()
        runs = make(tmp)
        made[case] = (runs, text.format(runs=runs, tmp=tmp))
    before = sorted(tmp_path.rglob("*"))
    yield made
    assert sorted(tmp_path.rglob("*")) == before  # nothing was created anywhere
    for path in tmp_path.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)


@pytest.mark.slow  # children
@pytest.mark.parametrize("case", UNWRITABLE)
def test_lab_submit_names_the_directory_and_the_problem(unwritable: Any, case: str) -> None:
    runs, text = unwritable[case]
    proc = run_without_capabilities("-m", "lab", "submit", "--level", "3", "--dataset", "digits",
                                    "--epochs", "1", "--runs-dir", str(runs))
    assert proc.returncode == ExitCode.IO, proc.stderr
    assert proc.stderr == f"lab: error: {text}\n"
    assert proc.stdout == ""


@pytest.mark.slow  # the console under the Pilot, in a child
def test_the_console_submit_names_the_directory_and_the_problem(unwritable: Any,
                                                                tmp_path: Path) -> None:
    cases = list(unwritable)
    proc = run_without_capabilities("-m", "tests.console_view", "submit", str(tmp_path / "data"),
                  *(str(unwritable[c][0]) for c in cases))
    assert proc.returncode == 0, proc.stderr
    for case, seen in zip(cases, json.loads(proc.stdout), strict=True):
        errors = [n["message"] for n in seen if n["severity"] == "error"]
        assert errors == [unwritable[case][1]], (case, seen)


@pytest.mark.parametrize("case", ["under a file", "a file"])
def test_writable_dir_refuses_in_process(tmp_path: Path, case: str) -> None:
    """The cases that hold for root without dropping capabilities, in the fast tier."""
    make, text = UNWRITABLE[case]
    runs = make(tmp_path)
    with pytest.raises(StorageError) as caught:
        writable_dir(runs)
    assert str(caught.value) == text.format(runs=runs, tmp=tmp_path)


def test_writable_dir_creates_what_is_missing(tmp_path: Path) -> None:
    assert writable_dir(tmp_path / "a" / "b").is_dir()

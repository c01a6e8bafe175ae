"""The comparison, through `lab compare` and the console's compare screen (issue 14): a run
whose result cannot be read is left out with a note while the rest are compared (defect 5), and
the study's column and the setups of the compared runs are told as they are (defect 9)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.cli import main
from lab.runs import RunDir, atomic_write_json
from lab.views.compare import comparison, setup_differences
from tests.cli_inprocess import one_click_command
from tests.console_view import compare_screen
from tests.readonly import run_without_capabilities
from tests.tui_runs import write_study

pytestmark = pytest.mark.slow  # the CLI in children and the console under the Pilot

# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def _flat(text: str) -> str:
    """Text with its wrapping undone: notes may wrap at any width."""
    return " ".join(text.split())


# ---- defect 5: one unreadable result.json --------------------------------------------------
def _retype(path: Path) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), "test_acc": "0.87"}))


def _to_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


CORRUPTIONS: dict[str, Callable[[Path], Any]] = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:40]),
    "wrong types": _retype,
    "wrong schema": lambda p: p.write_text(json.dumps([{"test_acc": 0.87}])),
    "binary": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "directory": _to_directory,
    "unreadable": lambda p: p.chmod(0),  # holds for root too: the children drop capabilities
}


@pytest.fixture(params=list(CORRUPTIONS))
def damaged(request: pytest.FixtureRequest, lab_dirs: dict[str, Path]) -> dict[str, Any]:
    """The study's three levels done, Level 3's result.json damaged one way."""
    runs = lab_dirs["runs"]
    ids = write_study(runs)
    path = RunDir(runs / ids["l3"]).result_path
    CORRUPTIONS[request.param](path)
    yield {"runs": runs, "data": lab_dirs["data"], "ids": ids, "path": path}
    if path.is_file():
        path.chmod(0o644)


@pytest.mark.parametrize("named", [False, True], ids=["default", "named"])
def test_lab_compare_leaves_out_an_unreadable_run(damaged: dict[str, Any], named: bool) -> None:
    ids = damaged["ids"]
    refs = [ids["l1"], ids["l2"], ids["l3"]] if named else []
    proc = run_without_capabilities("-m", "lab", "compare", *refs, "--json", "--runs-dir",
                                    str(damaged["runs"]))
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [ids["l1"], ids["l2"]]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "left out of the comparison" in lines[0], proc.stderr
    assert str(damaged["path"]) in lines[0]


def test_the_compare_screen_leaves_out_an_unreadable_run(damaged: dict[str, Any]) -> None:
    if damaged["path"].is_file() and not damaged["path"].stat().st_mode & 0o777:
        # the console in a child without capabilities: an unreadable file stays unreadable
        proc = run_without_capabilities("-m", "tests.console_view", "compare",
                                        str(damaged["runs"]), str(damaged["data"]))
        assert proc.returncode == 0, proc.stderr
        shown = json.loads(proc.stdout)
    else:
        shown = asyncio.run(compare_screen(damaged["runs"], damaged["data"]))
    assert shown["names"] == ["L1 0a01", "L2 0b02"]
    assert len(shown["notes"]) == 1 and "result.json" in shown["notes"][0]
    table = _flat(shown["table"])
    assert "left out" in table and "94.00%" in table and "96.00%" in table
    assert not table.startswith("!")  # the comparison, not only an error line


# ---- defect 9: the study's column and differing setups --------------------------------------
CIFAR, SHORT, DIGITS = ("cifar10", 224, 5), ("cifar10", 224, 1), ("digits", 32, 5)
STUDY = {1: "93.54%", 2: "94.74%", 3: "65.89%"}
SETUPS = [  # (setups of Levels 1, 2, 3), levels with the study's figure, fields that differ
    pytest.param((CIFAR, CIFAR, CIFAR), {1, 2, 3}, [], id="the study's setup"),
    pytest.param((DIGITS, DIGITS, DIGITS), set(), [], id="digits"),
    pytest.param((SHORT, SHORT, SHORT), set(), [], id="cifar10, one epoch"),
    pytest.param((CIFAR, ("cifar10", 32, 5), ("digits", 224, 5)), {1},
                 ["data set (cifar10, digits)", "image size (32, 224)"], id="mixed"),
    pytest.param((CIFAR, CIFAR, ("cifar10", 224, 10)), {1, 2}, ["epochs (5, 10)"],
                 id="a longer Level 3"),
]


def _set_up(runs: Path, setups: tuple) -> dict[int, str]:
    """The study's runs, each moved to its setup (config and result say the same)."""
    ids = write_study(runs)
    for level, (dataset, size, epochs) in enumerate(setups, start=1):
        run = RunDir(runs / ids[f"l{level}"])
        config = json.loads(run.config_path.read_text())
        atomic_write_json(run.config_path, {**config, "dataset": dataset, "image_size": size,
                                            "epochs": epochs})
        result = json.loads(run.result_path.read_text())
        atomic_write_json(run.result_path, {**result, "dataset": dataset})
    return {level: ids[f"l{level}"] for level in (1, 2, 3)}


def _check_notes(text: str, study: set[int], differ: list[str]) -> None:
    text = _flat(text)
    for level, figure in STUDY.items():
        assert (figure in text) == (level in study), (level, text)
    assert ("not like for like" in text) == bool(differ), text
    assert all(field in text for field in differ), text
    assert ("no study figure" in text) == (not study), text


@pytest.mark.parametrize(("setups", "study", "differ"), SETUPS)
def test_comparison_rows(lab_dirs: dict[str, Path], setups: tuple, study: set[int],
                         differ: list[str]) -> None:
    ids = _set_up(lab_dirs["runs"], setups)
    rows = comparison(lab_dirs["runs"], list(ids.values()))
    assert {r["level"] for r in rows if r["seed_acc"] is not None} == study
    assert setup_differences(rows) == differ


@pytest.mark.parametrize(("setups", "study", "differ"), SETUPS)
def test_lab_compare_says_which_setups_differ(lab_dirs: dict[str, Path], setups: tuple,
                                              study: set[int], differ: list[str],
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    _set_up(lab_dirs["runs"], setups)
    with pytest.raises(SystemExit) as exited:
        main(["compare", "--runs-dir", str(lab_dirs["runs"])])
    assert exited.value.code == 0
    stdout = capsys.readouterr().out
    assert ("Study" in stdout) == bool(study)
    _check_notes(stdout, study, differ)


@pytest.mark.parametrize(("setups", "study", "differ"), SETUPS)
def test_the_compare_screen_says_which_setups_differ(lab_dirs: dict[str, Path], setups: tuple,
                                                     study: set[int],
                                                     differ: list[str]) -> None:
    _set_up(lab_dirs["runs"], setups)
    shown = asyncio.run(compare_screen(lab_dirs["runs"], lab_dirs["data"]))
    assert shown["names"] == ["L1 0a01", "L2 0b02", "L3 0c03"]
    header = next(line for line in shown["table"].splitlines() if line.strip())
    assert ("study" in header) == bool(study), header
    _check_notes(shown["table"], study, differ)


ENVIRONMENTS = [  # (torch, device) of Levels 1-3 as result.json records them; the note's parts
    pytest.param([("2.14.1", "cpu")] * 3, [], id="alike"),
    pytest.param([("2.14.1", "cuda:0"), ("2.14.1", "cuda:1"), ("2.14.1", "cuda:0")], [],
                 id="other GPU, same type"),
    pytest.param([("2.11.0", "cuda:0"), ("2.14.1", "cuda:0"), ("2.14.1", "cuda:0")],
                 ["torch version (2.11.0, 2.14.1)"], id="torch"),
    pytest.param([("2.14.1", "cpu"), ("2.14.1", "cuda:0"), ("2.14.1", "mps")],
                 ["device type (cpu, cuda, mps)"], id="device"),
    pytest.param([("2.11.0", "cpu"), ("2.14.1", "cuda:0"), (None, None)],
                 ["torch version (2.11.0, 2.14.1)", "device type (cpu, cuda)"],
                 id="both, and an older run without either"),
]


@pytest.mark.parametrize(("ran", "differ"), ENVIRONMENTS)
def test_runs_from_another_torch_or_device_type_are_flagged(
        lab_dirs: dict[str, Path], ran: list[tuple], differ: list[str]) -> None:
    from lab.views.compare import comparison, comparison_notes

    ids = write_study(lab_dirs["runs"])
    for level, (version, device) in enumerate(ran, start=1):
        run = RunDir(lab_dirs["runs"] / ids[f"l{level}"])
        result = json.loads(run.result_path.read_text())
        result.pop("torch", None)
        result.pop("device", None)
        result.update({k: v for k, v in (("torch", version), ("device", device)) if v})
        atomic_write_json(run.result_path, result)
    notes = " ".join(comparison_notes(comparison(lab_dirs["runs"])))
    assert ("ran differently" in notes) == bool(differ), notes
    assert all(part in notes for part in differ), notes

"""`lab submit` checks what a worker would find missing hours later (issue 14, defect 4): the
data set and the ImageNet weights, without torch. A refused submission is one line, a non-zero
exit, and the real queue file is left exactly as it was; `--no-check` queues it anyway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.cli import main
from lab.data.store import Imported, save
from lab.errors import ExitCode
from lab.levels import level_config
from lab.queue import JobQueue
from lab.queue.actions import queueable
from lab.queue.checks import RESNET18_FILE, dataset_choices, imagenet_weights_path
from tests.cli_inprocess import one_click_command

NOT_FOUND, DATA = int(ExitCode.NOT_FOUND), int(ExitCode.DATA)


# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def cache_set(data_dir: Path, name: str) -> None:
    """A tiny real cached data set (two classes, 4×4 images)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 4, 4, 3), dtype=np.uint8)
    y = np.array([0, 1] * 4, dtype=np.int64)
    save(data_dir, name, Imported(["a", "b"], x, y, None, None, source="test",
                                  source_sha256="0", official=False, official_reason="test",
                                  format="test", default_name=name))


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    return int(stopped.value.code), captured.out, captured.err


def queue_rows(runs: Path) -> list[tuple]:
    if not (runs / "lab.db").exists():
        return []
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        return [(j.id, j.state, json.dumps(j.config, sort_keys=True)) for j in queue.jobs()]


@pytest.fixture
def world(lab_dirs: dict[str, Path]) -> dict[str, Path]:
    """A cached set `pets`, a broken cached set `broken`, and one job already queued."""
    cache_set(lab_dirs["data"], "pets")
    cache_set(lab_dirs["data"], "broken")
    (lab_dirs["data"] / "broken" / "manifest.json").write_text('{"name": "broken", "cla')
    cache_set(lab_dirs["data"], "no-arrays")
    (lab_dirs["data"] / "no-arrays" / "data.npz").unlink()
    return lab_dirs


REFUSED = [  # (case, submit arguments, exit code, phrases the one line holds)
    ("a misspelt built-in", ["--level", "3", "--dataset", "digitz"], NOT_FOUND,
     ["unknown dataset 'digitz'", "did you mean 'digits'", "known: digits", "pets"]),
    ("a misspelt cached set", ["--level", "3", "--dataset", "pest"], NOT_FOUND,
     ["did you mean 'pets'", "lab data import", "--no-check"]),
    ("a name like nothing", ["--level", "3", "--dataset", "zzzz"], NOT_FOUND,
     ["unknown dataset 'zzzz'", "known: digits, pets", "cifar10 (not cached"]),
    ("the default, not cached", ["--level", "3"], NOT_FOUND,
     ["dataset 'cifar10' is not cached", "lab data fetch", "lab data import"]),
    ("cifar10 by name, not cached", ["--level", "2", "--dataset", "cifar10",
                                     "--weights", "none"], NOT_FOUND, ["lab data fetch"]),
    ("a corrupt cached manifest", ["--level", "3", "--dataset", "broken"], DATA,
     ["'broken' cannot be read", "lab data import"]),
    ("a cached set without its arrays", ["--level", "3", "--dataset", "no-arrays"], DATA,
     ["data.npz"]),
    ("an image folder that is not there", ["--level", "3", "--dataset",
                                           "imagefolder:/no/such/tree"], NOT_FOUND,
     ["no image folder at /no/such/tree"]),
    ("ImageNet weights offline, not on disk", ["--level", "1", "--dataset", "digits"],
     NOT_FOUND, [RESNET18_FILE, "hub/checkpoints", "LAB_OFFLINE", "--weights none"]),
    ("Level 2 the same", ["--level", "2", "--dataset", "pets"], NOT_FOUND, [RESNET18_FILE]),
    ("one bad level of several", ["--level", "3", "--level", "1", "--dataset", "digits"],
     NOT_FOUND, [RESNET18_FILE]),
    ("a missing weights file", ["--level", "3", "--dataset", "digits", "--weights",
                                "/no/such.pt"], NOT_FOUND, ["/no/such.pt does not exist"]),
    ("Slurm takes the same path", ["--slurm", "--level", "3", "--dataset", "digitz"],
     NOT_FOUND, ["did you mean 'digits'"]),  # refused before sbatch is even looked for
]


@pytest.mark.parametrize(("case", "args", "code", "phrases"), REFUSED,
                         ids=[c[0] for c in REFUSED])
def test_a_submission_a_worker_could_not_run_is_refused_and_queues_nothing(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], case: str,
        args: list[str], code: int, phrases: list[str]) -> None:
    runs = world["runs"]
    assert cli(["submit", "--level", "3", "--dataset", "pets", "-q"], capsys)[0] == 0
    before = queue_rows(runs)
    assert len(before) == 1
    got, out, err = cli(["submit", *args], capsys)
    assert got == code, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: ") and out == "", err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert queue_rows(runs) == before  # the real queue file is as it was


@pytest.mark.parametrize(("case", "args", "code", "phrases"),
                         [c for c in REFUSED if "--slurm" not in c[1]],
                         ids=[c[0] for c in REFUSED if "--slurm" not in c[1]])
def test_no_check_queues_it_anyway(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                   case: str, args: list[str], code: int,
                                   phrases: list[str]) -> None:
    """For data (or weights) that exist only on the worker's machine."""
    got, _out, err = cli(["submit", *args, "--no-check", "--json"], capsys)
    assert got == 0, (case, err)
    rows = queue_rows(world["runs"])
    assert rows and all(state == "queued" for _id, state, _c in rows)


@pytest.mark.parametrize("args", [
    ["--level", "3", "--dataset", "digits"], ["--level", "3", "--dataset", "pets"],
    ["--level", "1", "--dataset", "pets", "--weights", "none"],
    ["--level", "3", "--dataset", "imagefolder:{data}"],
])
def test_what_a_worker_can_run_is_queued(world: dict[str, Path], args: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("{data}", str(world["data"])) for a in args]
    got, _out, err = cli(["submit", *args, "-q"], capsys)
    assert got == 0, err
    assert len(queue_rows(world["runs"])) == 1


def test_imagenet_weights_on_disk_or_a_download_allowed(
        lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    level1 = ["submit", "--level", "1", "--dataset", "digits", "-q"]
    assert cli(level1, capsys)[0] == NOT_FOUND  # offline (the tests' default), not on disk
    monkeypatch.delenv("LAB_OFFLINE")
    assert cli(level1, capsys)[0] == 0  # online: the job downloads them when it starts
    monkeypatch.setenv("LAB_OFFLINE", "1")
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert cli(level1, capsys)[0] == 0
    assert len(queue_rows(lab_dirs["runs"])) == 2


@pytest.mark.slow  # imports torch
@pytest.mark.parametrize("env", [
    {"TORCH_HOME": "{tmp}/th"}, {"TORCH_HOME": None, "XDG_CACHE_HOME": "{tmp}/xdg"},
    {"TORCH_HOME": None, "XDG_CACHE_HOME": None, "HOME": "{tmp}/home"},
    {"TORCH_HOME": "~/th", "HOME": "{tmp}/home"},
])
def test_the_weights_path_is_torchs_own(env: dict[str, str | None], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found without torch, it must be where torch.hub looks (`weights_cache_path`)."""
    from lab.core.models import weights_cache_path

    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.replace("{tmp}", str(tmp_path)))
    assert imagenet_weights_path() == weights_cache_path()


def test_the_checks_are_the_engines_one_function(world: dict[str, Path]) -> None:
    """`queueable` is what both `lab submit` and the console's dialog call."""
    config = level_config(3).replace(dataset="digitz")
    with pytest.raises(Exception, match="did you mean 'digits'"):
        queueable(config, world["data"])
    assert queueable(config, world["data"], check=False).dataset == "digitz"
    assert dataset_choices(world["data"]) == ["digits", "pets"]  # unreadable sets left out


@pytest.mark.slow  # a fresh interpreter
def test_submit_does_not_import_torch(lab_dirs: dict[str, Path]) -> None:
    """Submitting, its checks included (a cached set, an offline weights lookup), stays a
    config check and one transaction: torch is never imported."""
    cache_set(lab_dirs["data"], "pets")
    code = ("import sys\nfrom lab.cli import main\n"
            "for argv in (['submit', '--level', '3', '--dataset', 'pets', '-q'],\n"
            "             ['submit', '--level', '1', '--dataset', 'digitz']):\n"
            "    try:\n        main(argv)\n    except SystemExit as exc:\n"
            "        print('exit', exc.code)\n"
            "print('torch' in sys.modules, 'torchvision' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert proc.stdout.splitlines() == ["1", "exit 0", "exit 3", "False False"], proc

"""Config values and data checked before a run exists; resume that trusts its checkpoint.

Issue 13, classes 4 and 6 (part): every field of `RunConfig` has a type and a range checked
when the config is built (finite floats, seeds torch and numpy take, sizes bounded by a memory
estimate), everything checkable about the data happens in the preflight, before a run
directory exists; `lab resume` refuses a config.json edited since its checkpoint unless
`--force`; a status whose pid now belongs to another process does not block resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.config import (
    FLOAT_RANGES,
    INT_RANGES,
    MAX_SEED,
    NOT_TRAINING,
    RunConfig,
    config_fields,
)
from lab.errors import ConfigError
from lab.levels import build_config, level_config
from lab.runs import RunDir, State, pid_alive, process_start
from tests.cli_inprocess import one_click_command, run_cli
from tests.fakes import write_image_tree

USAGE, DATA = 2, 4
FIELD_KINDS = {name: str(kind) for name, kind in RunConfig.__annotations__.items()}
NUMERIC = sorted(n for n, k in FIELD_KINDS.items()
                 if k.startswith(("int", "float", "tuple[int")))


_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def one_line(err: str, *phrases: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lab: error: ") and "internal error" not in lines[0], err
    for phrase in phrases:
        assert phrase.lower() in lines[0].lower(), (phrase, lines[0])
    return lines[0]


def no_runs(runs: Path) -> bool:
    return not runs.exists() or not any(p.is_dir() for p in runs.iterdir())


# ---- every numeric field: type and range, through `--set` ----------------------------------
def test_every_numeric_field_has_a_range() -> None:
    """A field added later without a range would fail this, not a run."""
    ranged = set(INT_RANGES) | set(FLOAT_RANGES) | {"level", "cnn_channels"}
    assert set(NUMERIC) == ranged
    assert set(config_fields()) >= ranged | set(NOT_TRAINING)


def _bad_values(name: str) -> list[str]:
    """What no numeric field takes: not finite, too big for any type, bool words, text, and
    just past each end of its range (an open end itself)."""
    values = ["nan", "inf", "-inf", "1e400", "-1", "100000000000000000000", "9" * 5000,
              "true", "abc", "0x10", "1,5" if name != "cnn_channels" else "4,x"]
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        values += [str(low - 1), str(high + 1), "2.5"]
    elif name in FLOAT_RANGES:
        low, high, bounds = FLOAT_RANGES[name]
        values += [repr(low - 1e-3), repr(high * 1.001 + 1e-3)]
        values += [repr(float(low))] if bounds[0] == "(" else []
        values += [repr(float(high))] if bounds[1] == ")" else []
    elif name == "level":
        values += ["0", "4"]
    else:  # cnn_channels
        values += ["0", "8,0", "4097", ",".join(["8"] * 11)]
    return sorted(set(values))


BAD_SETS = [(name, value) for name in NUMERIC for value in _bad_values(name)]


def test_the_table_is_big_enough() -> None:
    assert len(NUMERIC) >= 25 and len(BAD_SETS) >= 300


@pytest.mark.parametrize(("name", "value"), BAD_SETS,
                         ids=[f"{n}={v[:12]}" for n, v in BAD_SETS])
def test_a_bad_value_is_one_line_exit_2_and_no_run(
        name: str, value: str, lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """`lab run --set KEY=VALUE` refuses at once: exit 2, one line naming the field, no run
    directory (the issue's weight_decay=nan, seed=1e20, cnn_hidden=1e9, rotation=nan and
    brightness=inf ran into internal errors with a failed run left behind)."""
    code, err = run_cli(["run", "--level", "3", "--dataset", "digits", "--image-size", "16",
                         "--epochs", "1", "--set", f"{name}={value}"], capsys)
    assert code == USAGE, err
    one_line(err, name)
    assert no_runs(lab_dirs["runs"])


@pytest.mark.parametrize("argv", [
    ["--set", "weight_decay=nan"], ["--set", "seed=100000000000000000000"],
    ["--seed", "100000000000000000000"], ["--set", "cnn_hidden=1000000000"],
    ["--set", "rotation=nan"], ["--set", "brightness=inf"], ["--lr", "nan"],
    ["--lr", "inf"], ["--image-size", "100000000000"], ["--batch-size", "-3"],
])
def test_the_issue_s_cases_and_named_options(
        argv: list[str], lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", "--level", "3", "--dataset", "digits", *argv], capsys)
    assert code == USAGE, err
    one_line(err)
    assert no_runs(lab_dirs["runs"])


def test_a_config_file_with_values_json_allows_but_no_field_takes(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """JSON's NaN, Infinity, a 400-digit integer, a 5000-digit one, a bool for a number."""
    base = level_config(3).to_dict()
    for i, text in enumerate(['"lr": NaN', '"lr": Infinity', f'"lr": 1{"0" * 400}',
                              f'"seed": 1{"0" * 5000}', '"epochs": true', '"dropout": -0.0001',
                              '"cnn_channels": [8, 1.5]', '"augment": 1']):
        doc = json.dumps(base)[:-1] + ", " + text + "}"
        path = tmp_path / f"c{i}.json"
        path.write_text(doc)
        code, err = run_cli(["run", "--config", str(path)], capsys)
        assert code == USAGE, (text, err)
        one_line(err)
    assert no_runs(lab_dirs["runs"])


# ---- the same, as a property over any value ------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=12)


def assert_in_range(config: RunConfig) -> None:
    for name in NUMERIC:
        value = getattr(config, name)
        kind = FIELD_KINDS[name]
        if name == "level":
            assert value is None or (type(value) is int and 1 <= value <= 3)
        elif name == "cnn_channels":
            assert type(value) is tuple and all(type(c) is int and c >= 1 for c in value)
        elif kind == "float":
            low, high, _ = FLOAT_RANGES[name]
            assert type(value) is float and math.isfinite(value) and low <= value <= high
        else:
            low, high = INT_RANGES[name]
            assert type(value) is int and low <= value <= high
    assert all(type(getattr(config, n)) is bool for n, k in FIELD_KINDS.items() if k == "bool")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(config_fields()), value=JSON)
def test_any_json_value_for_any_field_is_a_valid_config_or_one_config_error(
        name: str, value: Any) -> None:
    try:
        config = RunConfig.from_dict({**level_config(3).to_dict(), name: value}, strict=False)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert_in_range(config)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(config_fields()), text=st.text(max_size=30) | st.sampled_from(
    ["nan", "-nan", "+inf", "1e309", "1_000", "0b11", "٣", "²", " 7 ", "1e-320", "-0"]))
def test_any_set_string_for_any_field_is_a_valid_config_or_one_config_error(
        name: str, text: str) -> None:
    try:
        config = level_config(3).with_overrides([f"{name}={text}"])
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert_in_range(config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(["[" * 100000, "1" * 5000, '{"lr": 1e999}']))
def test_any_text_as_a_config_file_is_a_config_or_one_config_error(text: str) -> None:
    try:
        config = RunConfig.from_json(text)
    except ConfigError:
        return
    assert_in_range(config)


@pytest.mark.slow
def test_a_seed_at_the_limit_works_where_seeds_are_used() -> None:
    """The largest seed is one torch and numpy take, also as a data-parallel rank's seed."""
    import torch

    from lab.core.collectives import Dist
    from lab.core.parts import build_parts
    from lab.data.loader import epoch_seed

    config = level_config(3).replace(seed=MAX_SEED, split_seed=MAX_SEED, weights="none",
                                     image_size=16, cnn_channels=(4, 4, 4, 4), cnn_hidden=8)
    torch.manual_seed(config.seed)
    np.random.default_rng(config.split_seed).permutation(5)
    epoch_seed(config.seed, 10000, 1023)
    build_parts(config, 10, 3, torch.device("cpu"), None, Dist(rank=1023, world=1024))
    with pytest.raises(ConfigError, match="seed"):
        config.replace(seed=MAX_SEED + 1)


# ---- sizes: a memory estimate ---------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {}, {"cnn_convs": 2, "cnn_channels": (24, 48, 96, 192), "cnn_hidden": 256, "image_size": 32},
    {"cnn_channels": (3,), "image_size": 9, "cnn_hidden": 1},
    {"cnn_channels": (8, 16, 32, 64, 128, 256), "image_size": 100, "cnn_convs": 3},
    pytest.param({"model": "resnet18", "weights": "none"}, marks=pytest.mark.slow),  # torchvision
])
def test_the_parameter_count_is_the_model_s(changes: dict[str, Any]) -> None:
    """The estimate counts what `build_model` allocates, exactly, for 10 and 7 classes (built
    on the meta device: shapes without memory)."""
    import torch

    from lab.core.models import build_model

    config = level_config(3).replace(**changes)
    for classes in (10, 7):
        with torch.device("meta"):
            model = build_model(config, classes)
        assert config.parameter_count(classes) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("argv", "env"), [
    (["--level", "3", "--set", "cnn_hidden=65536", "--set", "cnn_channels=4096,4096,4096,4096",
      "--image-size", "1024"], {}),
    (["--level", "1", "--batch-size", "65536", "--image-size", "1024"], {}),
    (["--level", "1", "--set", "eval_batch_size=65536", "--image-size", "1024"], {}),
    (["--level", "1"], {"LAB_MAX_MEMORY_GIB": "1"}),
    (["--level", "3", "--set", "cnn_hidden=65536"], {"LAB_MAX_MEMORY_GIB": "10"}),
])
def test_a_config_too_big_for_the_memory_limit_is_refused(
        argv: list[str], env: dict[str, str], lab_dirs: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in ("run", "submit"):
        code, err = run_cli([command, *argv, "--dataset", "digits"], capsys)
        assert code == USAGE, err
        one_line(err, "GiB", "LAB_MAX_MEMORY_GIB")
    assert no_runs(lab_dirs["runs"]) and not (lab_dirs["runs"] / "lab.db").exists()


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "lots"])
def test_a_bad_memory_limit_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_MAX_MEMORY_GIB", value)
    code, err = run_cli(["submit", "--level", "3", "--dataset", "digits"], capsys)
    assert code == USAGE
    one_line(err, "LAB_MAX_MEMORY_GIB")


def test_the_limit_can_be_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    big = {"batch_size": 8192}  # about 230 GiB of activations at 224x224
    with pytest.raises(ConfigError, match="GiB"):
        build_config(1, None, big, [])
    monkeypatch.setenv("LAB_MAX_MEMORY_GIB", "1024")
    assert build_config(1, None, big, []).batch_size == 8192
    assert level_config(1).replace(batch_size=65536, image_size=1024).memory_estimate() > 2**44


# ---- the data: checked in the preflight, before the run directory --------------------------
@pytest.mark.parametrize(("per_class", "per_class_test", "argv", "code", "phrase"), [
    (2, 0, ["--level", "3"], DATA, "too small to split"),  # no validation image
    (5, 0, ["--level", "3"], DATA, "too small to split"),  # 4 + 0 + 1: no validation image
    (6, 0, ["--level", "3"], DATA, "0 test"),  # 5 + 1 + 0: no test image
    (10, 1, ["--level", "3", "--set", "train_fraction=0.99", "--set", "val_fraction=0.001"],
     DATA, "0 validation"),
    (10, 1, ["--level", "3", "--set", "nproc=4", "--batch-size", "8", "--device", "cpu"], DATA,
     "each of 4 processes"),  # 3 validation images for 4 processes
    (10, 1, ["--level", "1", "--weights", "none", "--image-size", "32", "--batch-size", "23"],
     USAGE, "training batch of one image"),  # 24 training images: a last batch of 1
    (10, 1, ["--level", "2", "--weights", "none", "--image-size", "24", "--batch-size", "1"],
     USAGE, "training batch of one image"),
])
def test_data_too_small_fails_in_the_preflight_with_no_run(
        per_class: int, per_class_test: int, argv: list[str], code: int, phrase: str,
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    write_image_tree(tree, per_class=per_class, per_class_test=per_class_test)
    size = [] if "--image-size" in argv else ["--image-size", "16"]
    got, err = run_cli(["run", *argv, *size, "--dataset", f"imagefolder:{tree}", "--epochs", "1"],
                       capsys)
    assert got == code, err
    one_line(err, phrase)
    assert no_runs(lab_dirs["runs"])


# ---- resume: config.json against the checkpoint --------------------------------------------
TINY = ["--level", "3", "--dataset", "digits", "--image-size", "16", "--set",
        "cnn_channels=4,4,4,4", "--set", "cnn_hidden=8", "--set", "gradcam=0", "-q"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 2-epoch run, made once; each test works on a copy, marked failed after its
    last epoch so that it is resumable (a crash before the test set)."""
    root = tmp_path_factory.mktemp("resume")
    env = {**os.environ, "LAB_RUNS_DIR": str(root / "runs"), "LAB_DATA_DIR": str(root / "data")}
    subprocess.run([sys.executable, "-m", "lab", "run", *TINY, "--epochs", "2"], check=True,
                   env=env, capture_output=True, timeout=600)
    (run,) = (root / "runs").iterdir()
    return run


@pytest.fixture
def paused(finished_run: Path, lab_dirs: dict[str, Path]) -> RunDir:
    import shutil

    runs = lab_dirs["runs"]
    runs.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copytree(finished_run, runs / finished_run.name))
    (copy / "result.json").unlink()
    run = RunDir(copy)
    status = {**run.status(), "state": "failed", "error": "boom"}
    (copy / "status.json").write_text(json.dumps(status))
    return run


def edit_config(run: RunDir, **changes: Any) -> None:
    data = json.loads(run.config_path.read_text())
    data.update(changes)
    run.config_path.write_text(json.dumps(data))


def files(run: RunDir) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.path.rglob("*")
            if p.is_file()}


def _changed(name: str, value: Any) -> Any:
    """Another valid value for a field."""
    if isinstance(value, bool):
        return not value
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        return value + 1 if value < high else value - 1
    if name in FLOAT_RANGES:
        low, high, _ = FLOAT_RANGES[name]
        return (value + low) / 2 if value > low else (value + high) / 2
    return {"level": None, "cnn_channels": [4, 4, 4, 8], "model": "resnet18",
            "weights": "imagenet", "dataset": "digits", "optimizer": "sgd",
            "scheduler": "cosine", "device": "cpu", "precision": "fp32", "data_on": "disk",
            "notes": "edited", "study": "grid-1", "test_on": "best"}[name]


@pytest.mark.parametrize("name", config_fields())
def test_every_field_that_changes_training_is_compared(name: str) -> None:
    config = level_config(3).replace(nproc=1)
    saved = config.to_dict()
    edited = config.replace(**{name: _changed(name, saved[name])}) \
        if name != "batch_size" else config.replace(batch_size=65)
    diff = edited.training_differences(saved)
    assert (name in diff) == (name not in NOT_TRAINING), diff
    assert set(diff) <= {name}
    assert config.training_differences(saved) == {}
    assert config.training_differences({}) == config.training_differences(RunConfig().to_dict())


@pytest.mark.slow
@pytest.mark.parametrize(("changes", "shown", "forced"), [
    ({"lr": 0.01}, "lr 0.0001 -> 0.01", 0),
    ({"epochs": 3, "weight_decay": 0.5}, "weight_decay 0.0001 -> 0.5, epochs 2 -> 3", 0),
    ({"augment": False}, "augment True -> False", 0),
    ({"seed": 7}, "seed 0 -> 7", 0),
    ({"split_seed": 1, "label_smoothing": 0.1}, "split_seed 42 -> 1", 0),
])
def test_resume_refuses_an_edited_config_and_force_lets_config_json_win(
        changes: dict[str, Any], shown: str, forced: int, paused: RunDir,
        capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(paused, **changes)
    before = files(paused)
    code, err = run_cli(["resume", paused.id], capsys)
    assert code == USAGE, err
    one_line(err, "differs from its checkpoint", shown, "--force")
    assert files(paused) == before
    code, err = run_cli(["resume", paused.id, "--force", "-q"], capsys)
    assert code == forced, err
    status = paused.status()
    assert status["state"] == State.DONE
    assert set(status["config_forced"]) == set(changes)
    for name, value in changes.items():
        assert status["config_forced"][name]["config"] == value


@pytest.mark.slow
@pytest.mark.parametrize(("changes", "shown"), [
    ({"cnn_hidden": 16}, "cnn_hidden 8 -> 16"),
    ({"cnn_channels": [4, 4, 8, 8], "cnn_convs": 2}, "cnn_channels [4, 4, 4, 4] -> [4, 4, 8, 8]"),
    ({"image_size": 32}, "image_size 16 -> 32"),  # the CNN's FC layer takes another size
    ({"model": "resnet18", "weights": "none"}, "model 'cnn' -> 'resnet18'"),
])
def test_a_checkpoint_of_another_model_is_refused_even_with_force(
        changes: dict[str, Any], shown: str, paused: RunDir,
        capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(paused, **changes)
    before = files(paused)
    for extra in ([], ["--force"]):
        code, err = run_cli(["resume", paused.id, *extra], capsys)
        assert code == DATA, err
        one_line(err, "holds a different model than config.json", shown)
        assert files(paused) == before


@pytest.mark.slow
def test_epochs_below_the_checkpoint_are_refused_even_with_force(
        paused: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(paused, epochs=1)
    before = files(paused)
    for extra in ([], ["--force"]):
        code, err = run_cli(["resume", paused.id, *extra], capsys)
        assert code == USAGE, err
        one_line(err, "epochs")
        assert files(paused) == before


@pytest.mark.slow
def test_fields_that_do_not_change_training_may_be_edited(
        paused: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(paused, eval_batch_size=17, log_every=3, notes="rerun on the cpu",
                device="cpu", gradcam=0)
    code, err = run_cli(["resume", paused.id, "-q"], capsys)
    assert code == 0, err
    assert "config_forced" not in paused.status()


# ---- resume: whose pid is it? --------------------------------------------------------------
def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_start_time_tells_a_process_from_a_later_one_with_its_pid() -> None:
    me = process_start()
    assert me is not None and me == process_start(os.getpid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = process_start(sleeper.pid)
        table = [
            (os.getpid(), None, True), (os.getpid(), me, True), (os.getpid(), theirs, False),
            (sleeper.pid, theirs, True), (sleeper.pid, me, False), (sleeper.pid, None, True),
            (1, None, True),  # an old record: the pid alone decides, as before
            (1, me, False), (1, "another-boot:12", False),
            (_exited_pid(), None, False), (_exited_pid(), me, False),
            (0, None, False), (-4, None, False), (True, None, False), ("12", None, False),
            (2**80, None, False),
        ]
        for pid, started, alive in table:
            assert pid_alive(pid, None, started) is alive, (pid, started)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert pid_alive(sleeper.pid, None, theirs) is False


@pytest.mark.slow
@pytest.mark.parametrize("state", [State.RUNNING, State.CREATED])
def test_a_status_naming_a_live_unrelated_pid_does_not_block_resume(
        state: State, paused: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's process died and pid 1 (alive, not ours) is in its status with the start
    time of the process that wrote it: the run reads as interrupted and resumes."""
    assert paused.status().get("pid_start")  # lab records it with the pid
    status = {**paused.status(), "state": state.value, "pid": 1,
              "pid_start": process_start(os.getpid())}
    paused.status_path.write_text(json.dumps(status))
    assert paused.live_state() == State.INTERRUPTED
    code, err = run_cli(["resume", paused.id, "-q"], capsys)
    assert code == 0, err
    assert paused.status()["state"] == State.DONE
    assert paused.status()["pid_start"] == process_start(os.getpid())


@pytest.mark.slow
def test_an_old_status_without_a_start_time_keeps_the_pid_rule(
        paused: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    status = {k: v for k, v in paused.status().items() if k != "pid_start"}
    paused.status_path.write_text(json.dumps({**status, "state": "running", "pid": 1}))
    before = files(paused)
    code, err = run_cli(["resume", paused.id], capsys)
    assert code == USAGE, err
    one_line(err, "still running")
    assert files(paused) == before

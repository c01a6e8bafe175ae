"""`--config FILE` starts from its level's preset (issue 14, defect 6): `{"level": 3,
"epochs": 1}` is the Level 3 CNN for one epoch, never RunConfig's ResNet18 labelled L3; a model
that contradicts its level is refused with one line, by every command that takes --config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main
from lab.config import RunConfig, config_fields
from lab.errors import ConfigError, ExitCode
from lab.levels import LEVELS, build_config, recipe_config
from lab.queue import JobQueue
from tests.cli_inprocess import one_click_command

USAGE = int(ExitCode.USAGE)
FIELDS = [f for f in config_fields() if f != "level"]


# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def write(tmp_path: Path, doc: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("recipe", ["seed", "tuned"])
def test_every_field_left_out_comes_from_the_level_s_preset(
        tmp_path: Path, level: int, recipe: str) -> None:
    """For each level and each field: a file holding the preset without that field, and one
    override, loads as the preset with that override."""
    preset = recipe_config(level, recipe)
    for field in FIELDS:
        override = {"seed": 7} if field != "seed" else {"epochs": 1}
        doc = {k: v for k, v in preset.to_dict().items() if k != field}
        path = write(tmp_path, {**doc, **override})
        assert build_config(None, path, {}, [], recipe=recipe) == preset.replace(**override), \
            field


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_a_partial_file_is_the_preset_with_its_values(tmp_path: Path, level: int) -> None:
    path = write(tmp_path, {"level": level, "epochs": 1})
    assert build_config(None, path, {}, []) == LEVELS[level].config.replace(epochs=1)
    # the file's level and --level may both be given when they agree
    assert build_config(level, path, {}, []) == LEVELS[level].config.replace(epochs=1)


def test_a_file_without_a_level_takes_level_or_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"epochs": 1, "dataset": "digits"})
    assert build_config(3, path, {}, []) == LEVELS[3].config.replace(epochs=1, dataset="digits")
    with pytest.raises(ConfigError, match='no "level"'):
        build_config(None, path, {}, [])
    custom = write(tmp_path, {"level": None, "epochs": 1}, "custom.json")
    assert build_config(None, custom, {}, []) == RunConfig(level=None, epochs=1)


CONTRADICTIONS = [  # (file, argv besides --config, phrase)
    ({"level": 3, "model": "resnet18"}, [], "model='resnet18' contradicts level 3"),
    ({"level": 1, "model": "cnn"}, [], "model='cnn' contradicts level 1"),
    ({"level": 2, "model": "cnn", "epochs": 1}, [], "contradicts level 2"),
    ({"level": 3}, ["--set", "model=resnet18"], "contradicts level 3"),
    ({"level": 2, "epochs": 1}, ["--level", "3"], "--level 3 contradicts the file's level 2"),
    ({"epochs": 1}, [], 'no "level"'),
    ({"level": 4}, [], "level=4"),
    ({"level": "3"}, [], "level='3'"),
]


@pytest.mark.parametrize("command", ["run", "submit"])
@pytest.mark.parametrize(("doc", "argv", "phrase"), CONTRADICTIONS,
                         ids=[c[2][:30] for c in CONTRADICTIONS])
def test_a_contradiction_is_one_line_and_writes_nothing(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        command: str, doc: dict, argv: list[str], phrase: str) -> None:
    path = write(tmp_path, {**doc, "dataset": "digits"})
    with pytest.raises(SystemExit) as stopped:
        main([command, "--config", str(path), *argv])
    err = capsys.readouterr().err
    assert int(stopped.value.code) == USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: ") and phrase in lines[0], lines
    if not argv:  # the file's own fault: the line names it
        assert path.name in lines[0], lines
    assert not lab_dirs["runs"].exists()  # no run directory, no queue


def test_level_and_model_disagreeing_without_a_file(capsys: pytest.CaptureFixture[str],
                                                    lab_dirs: dict[str, Path]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["submit", "--level", "1", "--dataset", "digits", "--set", "model=cnn"])
    assert int(stopped.value.code) == USAGE
    assert "model='cnn' contradicts level 1" in capsys.readouterr().err
    assert not lab_dirs["runs"].exists()


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_submit_queues_the_level_s_preset(tmp_path: Path, lab_dirs: dict[str, Path],
                                          level: int) -> None:
    """The issue's case through `lab submit`: the queued job is the level's model."""
    path = write(tmp_path, {"level": level, "epochs": 1, "dataset": "digits",
                            "weights": "none"})
    with pytest.raises(SystemExit) as stopped:
        main(["submit", "--config", str(path), "-q"])
    assert stopped.value.code == 0
    with JobQueue.open(lab_dirs["runs"], create=False, readonly=True) as queue:
        [job] = queue.jobs()
    expected = LEVELS[level].config.replace(epochs=1, dataset="digits", weights="none")
    assert job.config == expected.to_dict()

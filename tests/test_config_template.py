"""`lab levels --level N --format toml|json|yaml` (issue 15, item 1): a complete, commented
config file of a preset, one comment per field from `FIELD_HELP`, that `--config` reads back as
exactly that preset, for every level, recipe and format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.config import FIELD_HELP, RunConfig, config_fields
from lab.configfile import FORMAT_NAMES, read_config_file, render_template
from lab.errors import ExitCode
from lab.levels import LEVELS, RECIPES, build_config, recipe_config
from tests.cli_inprocess import one_click_command, run_cli_io

SUFFIX = {"toml": ".toml", "json": ".json", "yaml": ".yaml"}

_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def test_every_field_has_one_help_text_in_its_order() -> None:
    assert list(FIELD_HELP) == config_fields()
    assert all(text and "\n" not in text for text in FIELD_HELP.values())


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("level", sorted(LEVELS))
def test_the_template_is_complete_commented_and_reads_back_as_the_preset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], level: int, recipe: str,
        fmt: str) -> None:
    code, text, err = run_cli_io(["levels", "--level", str(level), "--recipe", recipe,
                                  "--format", fmt], capsys)
    assert code == 0, err
    path = tmp_path / f"l{level}{SUFFIX[fmt]}"
    path.write_text(text)
    preset = recipe_config(level, recipe)
    assert list(read_config_file(path).fields) == config_fields()  # complete, in order
    assert build_config(None, path, {}, []) == preset  # whatever --recipe the reader passes
    assert build_config(None, path, {}, [], recipe="tuned") == preset
    # a comment per field, the field's help
    if fmt == "json":
        doc = json.loads(text)
        assert all(doc[f"// {name}"] == FIELD_HELP[name] for name in config_fields())
    else:
        lines = text.splitlines()
        sep = " = " if fmt == "toml" else ": "
        for name in config_fields():
            [at] = [i for i, line in enumerate(lines) if line.startswith(name + sep)]
            assert lines[at - 1] == f"# {FIELD_HELP[name]}", name


@pytest.mark.parametrize(("argv", "phrase"), [
    (["--format", "toml"], "--format writes one level's config: add --level"),
    (["--level", "2"], "add --format toml, json or yaml"),
    (["--recipe", "tuned"], "add --format"),
    (["--level", "2", "--format", "ini"], "format 'ini': choose toml, json or yaml"),
    (["--level", "4", "--format", "toml"], "level 4 does not exist"),
    (["--level", "2", "--recipe", "fast", "--format", "toml"], "recipe 'fast' does not exist"),
    (["--level", "2", "--format", "toml", "--json"], "--json and --format: choose one"),
])
def test_a_template_request_that_makes_no_sense_is_one_line(
        capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str) -> None:
    code, out, err = run_cli_io(["levels", *argv], capsys)
    assert code == int(ExitCode.USAGE)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], lines
    assert out == ""


TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=30)


@pytest.mark.slow  # about 2 s
@settings(max_examples=40, deadline=None)
@given(notes=TEXT, weights=TEXT.filter(bool),
       lr=st.floats(0, 10, exclude_min=True), seed=st.integers(0, 2**63 - 1),
       channels=st.lists(st.integers(1, 64), min_size=1, max_size=4),
       level=st.sampled_from([1, 2, 3, None]))
def test_any_config_s_template_reads_back_as_it(
        tmp_path_factory: pytest.TempPathFactory, notes: str, weights: str, lr: float,
        seed: int, channels: list[int], level: int | None) -> None:
    """Strings with any character (quotes, backslashes, control and line-separator
    characters), tiny and huge floats, the custom level (TOML has no null): each format's
    template is the config again."""
    base = RunConfig(level=None) if level is None else LEVELS[level].config
    config = base.replace(notes=notes, weights=weights, lr=lr, seed=seed, image_size=256,
                          cnn_channels=tuple(channels))
    tmp = tmp_path_factory.mktemp("t")
    for fmt in FORMAT_NAMES:
        path = tmp / f"c{SUFFIX[fmt]}"
        path.write_text(render_template(config, fmt, "a test"), encoding="utf-8")
        assert build_config(None, path, {}, []) == config, fmt

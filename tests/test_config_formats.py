"""`--config FILE` in TOML, JSON or YAML (issue 15, item 1): the same content is the same
RunConfig whatever the format, and every fault of a file is one line naming the file, the key
and the line it is on, exit 2, nothing queued or written. A study file's `[sweep]` and
`[study]` tables are read into `ConfigFile` and checked; `lab run` refuses them."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.config import FLOAT_RANGES, INT_RANGES, MAX_SEED, RunConfig, config_fields
from lab.configfile import ConfigFile, read_config_file
from lab.errors import ConfigError, ExitCode
from lab.levels import LEVELS, build_config, check_sweep
from lab.queue import JobQueue
from tests.cli_inprocess import one_click_command, run_cli

USAGE = int(ExitCode.USAGE)
FORMATS = {"toml": ".toml", "json": ".json", "yaml": ".yaml"}

_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


# ---- files written line by line, so the test knows each key's line ------------------------
class Raw:
    """A line as it stands in each format (a syntax error), standing for `key`."""

    def __init__(self, key: str, **text: str) -> None:
        self.key, self.text = key, text


Items = list[Any]  # (key, value) pairs or Raw lines


def render(fmt: str, items: Items, tables: dict[str, Items] | None = None
           ) -> tuple[str, dict[tuple[str, ...], int]]:
    """The document and the line of each key: one key a line, tables after the fields."""
    lines: list[str] = []
    at: dict[tuple[str, ...], int] = {}

    def entry(path: tuple[str, ...], item: Any, indent: str) -> None:
        if isinstance(item, Raw):
            text, key = item.text[fmt], item.key
        else:
            key, value = item
            sep = {"toml": " = ", "yaml": ": ", "json": ": "}[fmt]
            name = json.dumps(key) if fmt == "json" else key
            text = f"{name}{sep}{json.dumps(value)}"
        lines.append(indent + text)
        at[(*path, key)] = len(lines)

    if fmt == "json":
        lines.append("{")
        groups: list[tuple[tuple[str, ...], Items]] = [((), items)]
        groups += [((name,), entries) for name, entries in (tables or {}).items()]
        for n, (path, entries) in enumerate(groups):
            if path:
                lines.append(f'  "{path[0]}": {{')
                at[path] = len(lines)
            for i, item in enumerate(entries):
                entry(path, item, "    " if path else "  ")
                if i < len(entries) - 1 or (not path and len(groups) > 1):
                    lines[-1] += ","
            if path:
                lines.append("  }" + ("," if n < len(groups) - 1 else ""))
        lines.append("}")
    else:
        for item in items:
            entry((), item, "")
        for name, entries in (tables or {}).items():
            lines.append(f"[{name}]" if fmt == "toml" else f"{name}:")
            at[(name,)] = len(lines)
            for item in entries:
                entry((name,), item, "" if fmt == "toml" else "  ")
    return "\n".join(lines) + "\n", at


def write(tmp_path: Path, fmt: str, items: Items, tables: dict[str, Items] | None = None,
          name: str = "config") -> tuple[Path, dict[tuple[str, ...], int]]:
    text, at = render(fmt, items, tables)
    path = tmp_path / f"{name}{FORMATS[fmt]}"
    path.write_text(text)
    return path, at


# ---- every fault: one line with file, line and key ------------------------------------------
SYNTAX = Raw("epochs", toml="epochs = ", yaml="epochs: a: b", json='"epochs": ,')
L3 = [("level", 3), ("dataset", "digits")]
# (id, fields, tables, the key at fault, a phrase the line holds)
FAULTS: list[tuple[str, Items, dict[str, Items], tuple[str, ...], str]] = [
    ("unknown key", [*L3, ("epochz", 1)], {}, ("epochz",), "unknown config key 'epochz'"),
    ("unknown key in sweep", L3, {"sweep": [("lr", [0.1]), ("lrr", [0.1])]}, ("sweep", "lrr"),
     "'lrr'"),
    ("unknown key in study", L3, {"study": [("name", "s"), ("runs", 3)]}, ("study", "runs"),
     "'runs'"),
    ("wrong type: text for a number", [*L3, ("epochs", "five")], {}, ("epochs",),
     "epochs='five'"),
    ("wrong type: number for a bool", [*L3, ("augment", 3)], {}, ("augment",), "augment=3"),
    ("wrong type: list of text", [*L3, ("cnn_channels", ["a"])], {}, ("cnn_channels",),
     "cnn_channels"),
    ("wrong type: level as text", [("dataset", "digits"), ("level", "3")], {}, ("level",),
     "level='3'"),
    ("wrong type: a sweep of one value", L3, {"sweep": [("lr", 0.1)]}, ("sweep", "lr"),
     "must be a list"),
    ("wrong type: seeds as text", L3, {"study": [("seeds", "3")]}, ("study", "seeds"),
     "seeds='3'"),
    ("wrong type: a swept value", L3, {"sweep": [("epochs", [1, "two"])]},
     ("sweep", "epochs"), "epochs='two'"),
    ("out of range", [*L3, ("dropout", 1.5)], {}, ("dropout",), "dropout=1.5"),
    ("out of range: zero epochs", [*L3, ("epochs", 0), ("lr", 0.1)], {}, ("epochs",),
     "epochs=0"),
    ("out of range across fields", [*L3, ("nproc", 3)], {}, ("nproc",), "multiple of nproc"),
    ("out of range: a swept value", L3, {"sweep": [("dropout", [0.0, 1.5])]},
     ("sweep", "dropout"), "dropout=1.5"),
    ("out of range: an empty sweep", L3, {"sweep": [("lr", [])]}, ("sweep", "lr"), "empty"),
    ("out of range: seeds", L3, {"study": [("seeds", 0)]}, ("study", "seeds"), "seeds=0"),
    ("out of range: a study name", L3, {"study": [("name", "../x")]}, ("study", "name"),
     "study name='../x'"),
    ("a value swept twice", L3, {"sweep": [("lr", [0.1, 0.1])]}, ("sweep", "lr"), "twice"),
    ("syntax error", [*L3, SYNTAX, ("lr", 0.1)], {}, ("epochs",), "not valid"),
    ("a key given twice", [*L3, ("epochs", 1), ("epochs", 2)], {}, ("epochs",), "epochs"),
    ("level contradicting model", [*L3, ("model", "resnet18")], {}, ("model",),
     "model='resnet18' contradicts level 3"),
    ("level 1 with the CNN", [("model", "cnn"), ("level", 1)], {}, ("model",),
     "model='cnn' contradicts level 1"),
    ("a sweep contradicting the level", [("level", 1)], {"sweep": [("model", ["cnn"])]},
     ("sweep", "model"), "contradicts level 1"),
    ("a level that does not exist", [("level", 4)], {}, ("level",), "level=4"),
]


def check_one_line(err: str, path: Path, line: int, phrase: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lab: error: {path}:{line}: "), (line, lines[0])
    assert phrase in lines[0], (phrase, lines[0])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("items", "tables", "key", "phrase"), [f[1:] for f in FAULTS],
                         ids=[f[0] for f in FAULTS])
def test_a_fault_is_one_line_with_file_line_and_key(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        fmt: str, items: Items, tables: dict[str, Items], key: tuple[str, ...],
        phrase: str) -> None:
    path, at = write(tmp_path, fmt, items, tables)
    line = max(n for k, n in at.items() if k == key)  # a key given twice: the second
    commands = ["submit"] if tables else ["run", "submit"]  # lab run refuses a study first
    for command in commands:
        code, err = run_cli([command, "--config", str(path)], capsys)
        assert code == USAGE, err
        check_one_line(err, path, line, phrase)
    assert not lab_dirs["runs"].exists()  # no run directory, no queue


def test_the_level_option_contradicting_the_file_names_the_file_s_level(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in FORMATS:
        path, at = write(tmp_path, fmt, [("dataset", "digits"), ("level", 2)])
        code, err = run_cli(["submit", "--config", str(path), "--level", "3"], capsys)
        assert code == USAGE
        check_one_line(err, path, at[("level",)], "--level 3 contradicts the file's level 2")
    assert not lab_dirs["runs"].exists()


@pytest.mark.parametrize(("name", "phrase"), [
    ("config.txt", "not '.txt'"),
    ("config", "and this file has none"),
])
def test_an_unknown_suffix_lists_the_formats(tmp_path: Path, lab_dirs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str], name: str,
                                             phrase: str) -> None:
    path = tmp_path / name
    path.write_text('{"level": 3}')
    code, err = run_cli(["run", "--config", str(path)], capsys)
    assert code == USAGE
    assert err.strip().splitlines() == [
        f"lab: error: {path}: a config file's suffix is .toml, .json, .yaml or .yml, {phrase}"]
    assert not lab_dirs["runs"].exists()


def test_yaml_without_pyyaml_says_how_to_get_it(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = write(tmp_path, "yaml", L3)
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    code, err = run_cli(["run", "--config", str(path)], capsys)
    assert code == USAGE
    assert err.strip() == (f"lab: error: {path}: YAML config files need PyYAML: "
                           "pip install 'cifar-lab-console[yaml]'")
    extras = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'name = "cifar-lab-console"' in extras and 'yaml = ["pyyaml' in extras


# ---- the same content, the same config ------------------------------------------------------
def _floats(name: str) -> st.SearchStrategy[float]:
    low, high, bounds = FLOAT_RANGES[name]
    return st.floats(low, high, exclude_min=bounds[0] == "(", exclude_max=bounds[1] == ")")


VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{name: st.integers(low, min(high, 4096)) for name, (low, high) in INT_RANGES.items()},
    **{name: _floats(name) for name in FLOAT_RANGES},
    "seed": st.integers(0, MAX_SEED), "split_seed": st.integers(0, MAX_SEED),
    "crop_padding": st.integers(0, 8).map(float), "image_size": st.integers(8, 64),
    "level": st.sampled_from([1, 2, 3, None]), "model": st.sampled_from(["resnet18", "cnn"]),
    "weights": st.sampled_from(["imagenet", "none"]),
    "dataset": st.sampled_from(["cifar10", "digits"]),
    "cnn_channels": st.lists(st.integers(1, 64), min_size=1, max_size=3),
    "optimizer": st.sampled_from(["adam", "adamw", "sgd"]),
    "scheduler": st.sampled_from(["none", "cosine", "onecycle"]),
    "device": st.sampled_from(["auto", "cpu"]), "precision": st.sampled_from(["auto", "fp32"]),
    "notes": st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    "study": st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True) | st.just(""),
    "test_on": st.sampled_from(["last", "best"]),
    "data_on": st.sampled_from(["auto", "device", "host", "disk"]),
    **{f.name: st.booleans() for f in dataclasses.fields(RunConfig) if f.type in (bool, "bool")},
}
DOCUMENTS = st.lists(st.sampled_from(config_fields()), unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: VALUES[n] for n in names}))


def toml_text(doc: dict[str, Any]) -> str:
    """A TOML writer of the test's own (no TOML writer is installed): JSON's literals, which
    TOML shares, with DEL escaped and none as TOML's "none" (TOML has no null)."""
    def literal(value: Any) -> str:
        if value is None:
            return '"none"'
        if isinstance(value, float):
            return repr(value)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return "".join(f"{k} = {literal(v)}\n" for k, v in doc.items())


WRITERS = {"toml": toml_text, "json": json.dumps,
           "yaml": lambda doc: yaml.safe_dump(doc, allow_unicode=False)}


def outcome(path: Path, level: int | None) -> tuple[str, Any]:
    """The config a file gives, or its error without the FILE:LINE prefix (lines differ)."""
    try:
        return "config", build_config(level, path, {}, [])
    except ConfigError as exc:
        return "error", re.sub(rf"^{re.escape(str(path))}(:\d+)?: ", "", str(exc))


@pytest.mark.slow  # about 3 s
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=DOCUMENTS, level=st.sampled_from([None, 1, 2, 3]))
def test_toml_json_and_yaml_of_the_same_content_give_the_same_config(
        tmp_path: Path, doc: dict[str, Any], level: int | None) -> None:
    """Any subset of fields with any values (most valid, some not): the three files give
    the same config, or the same refusal (about four in ten build)."""
    results = []
    for fmt, writer in WRITERS.items():
        path = tmp_path / f"doc{FORMATS[fmt]}"
        path.write_text(writer(doc), encoding="utf-8")
        results.append(outcome(path, level))
    assert results[0] == results[1] == results[2], (doc, results)


def test_the_property_reaches_configs_as_well_as_errors(tmp_path: Path) -> None:
    """The property above compares configs, not only refusals: a typical document builds."""
    doc = {"level": 3, "dataset": "digits", "lr": 3e-05, "cnn_channels": [8, 16],
           "notes": "tab\there, ünïcode, \x7f", "augment": False}
    for fmt, writer in WRITERS.items():
        path = tmp_path / f"doc{FORMATS[fmt]}"
        path.write_text(writer(doc), encoding="utf-8")
        assert outcome(path, None) == ("config", LEVELS[3].config.replace(**doc)), fmt


SAME = {"level": 3, "dataset": "digits", "epochs": 1, "image_size": 16, "lr": 0.002,
        "weights": "none", "cnn_channels": [8, 16]}


def test_submit_queues_the_same_job_from_each_format(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for fmt, writer in WRITERS.items():
        (tmp_path / f"job{FORMATS[fmt]}").write_text(writer(SAME))
        code, err = run_cli(["submit", "--config", str(tmp_path / f"job{FORMATS[fmt]}"), "-q",
                             "--epochs", "2", "--set", "seed=5"], capsys)
        assert code == 0, err
    with JobQueue.open(lab_dirs["runs"], create=False, readonly=True) as queue:
        configs = [job.config for job in queue.jobs()]
    # the layers: preset <- file <- named option (--epochs) <- --set
    expected = LEVELS[3].config.replace(**SAME).replace(epochs=2, seed=5).to_dict()
    assert configs == [expected] * 3


@pytest.mark.slow
def test_a_file_with_level_and_two_fields_trains_that_level_s_model(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case through `lab run`: the file holds only level and two fields (TOML);
    the rest is Level 3's preset (the CNN, augmentation, weight decay), named options last."""
    path = tmp_path / "l3.toml"
    path.write_text('level = 3\ndataset = "digits"\nepochs = 1\n')
    code, err = run_cli(["run", "--config", str(path), "--image-size", "16", "--set",
                         "gradcam=0", "-q"], capsys)
    assert code == 0, err
    [run] = [p for p in lab_dirs["runs"].iterdir() if p.is_dir()]
    saved = RunConfig.from_json((run / "config.json").read_text())
    assert saved == LEVELS[3].config.replace(dataset="digits", epochs=1, image_size=16,
                                             gradcam=0)
    assert saved.model == "cnn" and saved.augment and saved.weight_decay == 1e-4
    result = json.loads((run / "result.json").read_text())  # trained and tested
    assert result["level"] == 3 and result["epochs"] == 1 and 0 <= result["test_acc"] <= 1


# ---- study files ------------------------------------------------------------------------------
STUDY: tuple[Items, dict[str, Items]] = (
    [("level", 2), ("dataset", "digits"), ("epochs", 1)],
    {"sweep": [("lr", [0.001, 0.0003]), ("dropout", [0.0, 0.5])],
     "study": [("name", "lr-dropout"), ("seeds", 3)]})


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_study_file_is_read_into_a_config_file(tmp_path: Path, fmt: str) -> None:
    path, at = write(tmp_path, fmt, *STUDY)
    cf = read_config_file(path)
    assert cf == ConfigFile(path, {"level": 2, "dataset": "digits", "epochs": 1},
                            {"lr": [0.001, 0.0003], "dropout": [0.0, 0.5]}, "lr-dropout", 3)
    assert cf.is_study and cf.line("sweep", "dropout") == at[("sweep", "dropout")]
    config = build_config(None, cf, {}, [])
    assert config == LEVELS[2].config.replace(dataset="digits", epochs=1)
    check_sweep(config, cf)  # every swept value is a valid Level 2 config


@pytest.mark.parametrize("fmt", FORMATS)
def test_lab_run_refuses_a_study_file(tmp_path: Path, lab_dirs: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    for n, tables in enumerate([STUDY[1], {"sweep": STUDY[1]["sweep"]},
                                {"study": [("seeds", 2)]}]):
        path, at = write(tmp_path, fmt, STUDY[0], tables, name=f"study{n}")
        code, err = run_cli(["run", "--config", str(path)], capsys)
        assert code == USAGE
        table = "sweep" if "sweep" in tables else "study"
        check_one_line(err, path, at[(table,)],
                       "a study file: queue it with lab submit --config FILE")
    assert not lab_dirs["runs"].exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_lab_submit_queues_a_study_file_as_its_grid(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        fmt: str) -> None:
    """2 lr x 2 dropout x 3 seeds = 12 jobs in the file's study; flags override its keys."""
    path, _at = write(tmp_path, fmt, *STUDY)
    code, err = run_cli(["submit", "--config", str(path), "--weights", "none", "-q"], capsys)
    assert code == 0, err
    with JobQueue.open(lab_dirs["runs"]) as queue:
        jobs = queue.jobs()
    configs = [j.config for j in jobs]
    assert len(configs) == 12 and {c["study"] for c in configs} == {"lr-dropout"}
    assert {(c["lr"], c["dropout"], c["seed"]) for c in configs} == {
        (lr, d, s) for lr in (0.001, 0.0003) for d in (0.0, 0.5) for s in (0, 1, 2)}
    assert all(c["level"] == 2 and c["epochs"] == 1 and c["dataset"] == "digits"
               for c in configs)
    code, err = run_cli(["submit", "--config", str(path), "--seeds", "1", "--study", "other",
                         "--sweep", "lr=0.01", "--weights", "none", "-q"], capsys)
    assert code == 0, err
    with JobQueue.open(lab_dirs["runs"]) as queue:
        other = [j.config for j in queue.jobs() if j.config["study"] == "other"]
    assert sorted((c["lr"], c["dropout"]) for c in other) == [(0.01, 0.0), (0.01, 0.5)]


def test_a_study_field_is_not_a_study_table(tmp_path: Path) -> None:
    """`study = "name"` is RunConfig's field (one run labelled with a study), not a table."""
    path = tmp_path / "one.toml"
    path.write_text('level = 1\nstudy = "s1"\n')
    cf = read_config_file(path)
    assert not cf.is_study and build_config(None, cf, {}, []).study == "s1"


# ---- the line finder on the formats' quirks ---------------------------------------------------
QUIRKS = [  # (file name, text, the key at fault, its line)
    ("multiline.toml", 'level = 3\nnotes = """\nepochs = 0\n"""\nepochs = 0\n', "epochs", 5),
    ("literal.toml", "level = 3\nnotes = '''\nlr = -1\n'''\nlr = -1\n", "lr", 5),
    ("quoted.toml", 'level = 3\n"epo\\u0063hs" = 0\n', "epochs", 2),
    ("inline.toml", "level = 3\nsweep = {lr = [0.1, -1]}\n", "lr", 2),
    ("dotted.toml", "level = 3\nsweep.lr = [0.1, -1]\n", "lr", 2),
    ("array.toml", "level = 3\n[[sweep]]\nlr = 1\n", "sweep", 2),
    ("braces.json", '{"notes": "{\\"epochs\\": 1, [",\n "level": 3,\n "epochs": 0}', "epochs", 3),
    ("nested.json", '{"level": 3,\n "epochs": "x",\n "cnn_channels": [{"epochs": 1}]}', "epochs",
     2),
    ("escaped.json", '{"level": 3,\n"epo\\u0063hs": 0}', "epochs", 2),
    ("flow.yaml", "notes: 'epochs: 1'\n{level: 3, epochs: 0}\n", None, 2),
    ("flowmap.yaml", "{level: 3,\n epochs: 0}\n", "epochs", 2),
    ("anchors.yaml", "level: 3\nsweep:\n  lr: &v [0.1, -1]\n", "lr", 3),
]


@pytest.mark.parametrize(("name", "text", "key", "line"), QUIRKS, ids=[q[0] for q in QUIRKS])
def test_the_line_is_found_through_each_format_s_quirks(
        tmp_path: Path, lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        name: str, text: str, key: str | None, line: int) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, err = run_cli(["submit", "--config", str(path)], capsys)
    assert code == USAGE, err
    check_one_line(err, path, line, key or "not valid YAML")
    assert not lab_dirs["runs"].exists()

"""`lab export`: each format loads back with its own library and agrees with the eager model on
the run's test images; a Level 2 export loads strictly into torchvision's ResNet18; missing
extras, bad arguments and failed exports are one line and leave existing files alone.

The runs are written as the engine leaves them, with a checkpoint of a freshly initialised
model: export fidelity does not depend on how well the weights were trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lab.core.models import build_model
from lab.data.augment import resize_normalize
from lab.errors import DataError
from lab.explain import export as export_mod
from lab.explain.export import (
    FORMATS,
    compare,
    export_run,
    load_exported,
    plain_model,
    read_metadata,
)
from lab.runs import RunDir
from lab.runs.checkpoint import save
from tests.cli_inprocess import one_click_command, run_cli
from tests.tui_runs import write_run

L2_RUN = "20250301-090000-l2-0b02"
L3_RUN = "20250301-100000-l3-0c03"

cli = pytest.fixture(scope="module")(one_click_command)


def with_checkpoint(run: RunDir, seed: int) -> None:
    config = run.config()
    torch.manual_seed(seed)
    model = build_model(config.replace(weights="none"), 10)
    model.eval()
    save(run, {"epoch": config.epochs, "step": 100, "config": config.to_dict(),
               "model": model.state_dict(), "optimizer": {},
               "rng_cpu": torch.get_rng_state()})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export-runs")
    # Level 2: ResNet18 with dropout folded into fc; Level 3: a small custom CNN
    with_checkpoint(write_run(root, L2_RUN, 2, epochs=1, config={"image_size": 32}), 1)
    with_checkpoint(write_run(root, L3_RUN, 3, epochs=1,
                              config={"image_size": 16, "cnn_channels": (4, 8, 8, 8),
                                      "cnn_hidden": 16}), 2)
    return root


def eager(runs: Path, run_id: str) -> torch.nn.Module:
    run = RunDir(runs / run_id)
    model = build_model(run.config().replace(weights="none"), 10)
    model.load_state_dict(torch.load(run.checkpoint_path, weights_only=True)["model"])
    return model.eval()


def sample_images(runs: Path, run_id: str, data: Path) -> torch.Tensor:
    from lab.core.prepare import split_data

    config = RunDir(runs / run_id).config()
    _d, _s, test_x, _y = split_data(config, data)
    return resize_normalize(torch.from_numpy(test_x[:64]).permute(0, 3, 1, 2).contiguous(),
                            config.image_size)


# Every format on the small CNN; the ResNet18 in safetensors, the one format whose key names
# lab rewrites (the exporters trace whatever module they are given: the CNN covers them).
CASES = [pytest.param(L3_RUN, fmt, marks=[pytest.mark.slow] if fmt == "onnx" else [],
                      id=f"l3-{fmt}") for fmt in FORMATS]
CASES.append(pytest.param(L2_RUN, "safetensors", marks=pytest.mark.slow, id="l2-safetensors"))


@pytest.mark.parametrize(("run_id", "fmt"), CASES)
def test_an_export_loads_back_and_agrees_with_the_eager_model(
        runs: Path, tmp_path: Path, run_id: str, fmt: str) -> None:
    data = tmp_path / "data"
    done = export_run(RunDir(runs / run_id), fmt, tmp_path / f"m.{fmt}", data_dir=data)
    assert done.passed is True and done.top1_agree == 1.0 and done.images > 0
    assert "test images of digits" in done.inputs
    meta = read_metadata(done.path, fmt)
    config = RunDir(runs / run_id).config()
    assert meta["run_id"] == run_id and meta["level"] == config.level
    assert meta["input_size"] == config.image_size and meta["num_classes"] == 10
    assert meta["classes"] == json.loads((runs / run_id / "result.json").read_text())["classes"]
    assert meta["test_acc"] == pytest.approx(0.89)
    assert len(meta["mean"]) == len(meta["std"]) == 3
    # our own check again, independently: the file against the eager model, batch 1 and 7
    x = sample_images(runs, run_id, data)
    model, loaded = eager(runs, run_id), load_exported(done.path, fmt, meta)
    with torch.no_grad():
        for batch in (x[:1], x[:7], x):
            want, got = model(batch), loaded(batch).float()
            assert torch.equal(want.argmax(1), got.argmax(1))
            assert (want - got).abs().max() <= 1e-3 + 1e-4 * want.abs().max()


@pytest.mark.slow
def test_a_level_2_export_loads_strictly_into_torchvision_resnet18(
        runs: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from torchvision.models import resnet18

    done = export_run(RunDir(runs / L2_RUN), "safetensors", tmp_path / "l2.safetensors",
                      check=False)
    plain = resnet18(num_classes=10)
    plain.load_state_dict(load_file(str(done.path)), strict=True)  # raises on any key mismatch
    plain.eval()
    x = sample_images(runs, L2_RUN, tmp_path / "data")
    with torch.no_grad():
        assert torch.allclose(plain(x), eager(runs, L2_RUN)(x), atol=1e-5)
    assert type(plain_model(read_metadata(done.path, "safetensors"))) is type(plain)


def test_a_wrong_file_is_caught_by_the_parity_check(runs: Path, tmp_path: Path) -> None:
    done = export_run(RunDir(runs / L3_RUN), "torchscript", tmp_path / "m.pt", check=False)
    other = eager(runs, L3_RUN)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    x = sample_images(runs, L3_RUN, tmp_path / "data")
    compare(done, other, RunDir(runs / L3_RUN).config(), x)
    assert done.passed is False and done.max_abs_diff > 1e-3


def test_a_failed_export_leaves_the_existing_file(runs: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m.pt"
    target.write_bytes(b"the export of yesterday")

    def broken(*_args: object) -> bytes:
        raise RuntimeError("tracer gave up\nsecond line")

    monkeypatch.setattr(export_mod, "_write_torchscript", broken)
    with pytest.raises(DataError) as info:
        export_run(RunDir(runs / L3_RUN), "torchscript", target, check=False)
    assert "\n" not in str(info.value) and "tracer gave up" in str(info.value)
    assert target.read_bytes() == b"the export of yesterday"


def test_the_cli_writes_json_and_the_default_path(runs: Path, tmp_path: Path, cli: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["export", L3_RUN[-4:], "--format", "torchscript", "--json", "--runs-dir",
              str(runs), "--data-dir", str(tmp_path / "data")])
    assert stopped.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    path = runs / L3_RUN / "export" / "model.pt"
    assert report["path"] == str(path) and report["parity"]["passed"] is True
    assert report["parity"]["top1_agree"] == 1.0 and report["metadata"]["run_id"] == L3_RUN
    assert path.is_file() and read_metadata(path, "torchscript")["run_id"] == L3_RUN


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--format", "pickle"], 2, "must be one of safetensors, torchscript, onnx"),
    (["--weights", "best"], 3, "has no best.pt"),
    (["--weights", "middle"], 2, "must be one of last, best"),
    (["--opset", "3", "--format", "onnx"], 2, "--opset 3"),
    (["-o", "{tmp}"], 2, "is a directory"),
])
def test_bad_arguments_are_one_line_and_write_nothing(
        runs: Path, tmp_path: Path, cli: None, capsys: pytest.CaptureFixture[str],
        args: list[str], code: int, words: str) -> None:
    before = sorted(p.name for p in (runs / L3_RUN).rglob("*"))
    argv = ["export", L3_RUN, *[a.format(tmp=tmp_path) for a in args],
            "--runs-dir", str(runs), "--data-dir", str(tmp_path / "data")]
    got, err = run_cli(argv, capsys)
    assert got == code and words in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in (runs / L3_RUN).rglob("*")) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fmt", "extra", "module"), [("onnx", "onnx", "onnxruntime"),
                                                      ("safetensors", "export", "safetensors")])
def test_a_missing_extra_names_it_in_one_line(
        runs: Path, tmp_path: Path, cli: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, fmt: str, extra: str, module: str) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    got, err = run_cli(["export", L3_RUN, "--format", fmt, "-o", str(tmp_path / "m"),
                        "--runs-dir", str(runs)], capsys)
    assert got == 3 and f"pip install 'cifar-lab-console[{extra}]'" in err and module in err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []



@pytest.mark.parametrize("absent", [(), ("onnxruntime",), ("safetensors", "onnx"),
                                    ("pynvml", "yaml")])
def test_doctor_lists_each_extra_and_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                     absent: tuple[str, ...]) -> None:
    import importlib.util

    from lab.cli.info import extras_report
    from lab.extras import EXTRAS

    # The test decides what is installed: every extra's module is present unless named absent,
    # whatever this machine has (CI installs the dev extra, which leaves out `gpu`).
    provided = {m for extra in EXTRAS.values() for m in extra.modules}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in absent else
                        (object() if name in provided else real(name, *a)))
    lines = extras_report()
    assert [line.split(":")[0] for line in lines] == list(EXTRAS)
    for line, extra in zip(lines, EXTRAS.values(), strict=True):
        gone = [m for m in extra.modules if m in absent]
        assert ("installed" in line) == (not gone), line
        assert all(m in line for m in gone) and extra.enables in line

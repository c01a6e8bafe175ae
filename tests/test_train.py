"""The training loop on real (digits) data: records, checkpoints, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lab.errors import ConfigError, NotFoundError
from lab.launch.run import resume_run, start_run
from lab.launch.session import train_run as fit
from lab.levels import level_config
from lab.runs import list_runs
from lab.runs.checkpoint import read as load_checkpoint

pytestmark = pytest.mark.slow  # real training runs

TINY = dict(dataset="digits", image_size=16, epochs=3, batch_size=64, device="cpu",
            cnn_channels=(8, 16, 16, 32), cnn_hidden=64, lr=3e-3, log_every=5)


def tiny_config(**changes):  # noqa: ANN201 - a RunConfig
    return level_config(3).replace(**{**TINY, **changes})


def test_fit_records_every_event_and_the_result(lab_dirs: dict[str, Path]) -> None:
    events: list[dict] = []
    run, result = start_run(tiny_config(), lab_dirs["runs"], lab_dirs["data"], emit=events.append)
    kinds = [e["event"] for e in run.events()]
    assert kinds[0] == "start" and kinds[-1] == "test"
    assert [e["epoch"] for e in run.events() if e["event"] == "epoch"] == [1, 2, 3]
    steps = [e["step"] for e in run.events() if e["event"] == "step"]
    assert steps == sorted(steps) and len(steps) >= 3
    assert run.status()["state"] == "done"
    saved = run.result()
    assert saved == result
    assert 0.0 <= result["test_acc"] <= 1.0
    assert len(result["per_class"]) == 10 and sum(r["support"] for r in result["per_class"]) == \
        result["split"]["test"]
    assert sum(map(sum, result["confusion"])) == result["split"]["test"]
    assert result["split"]["test_source"] == "split"
    assert load_checkpoint(run.checkpoint_path)["epoch"] == 3
    # the end-of-run Grad-CAM gallery (2 per class and kind by default)
    gallery = json.loads((run.path / "gradcam" / "gradcam" / "index.json").read_text())
    assert 10 <= len(gallery["items"]) <= 40 and run.status()["gradcam_error"] is None
    # the emit callback saw what was recorded, plus per-batch progress and the final result
    assert {"batch", "done"} <= {e["event"] for e in events}


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(
        lab_dirs: dict[str, Path]) -> None:
    config = tiny_config(augment=True, dropout=0.3)
    _, reference = start_run(config, lab_dirs["runs"], lab_dirs["data"])

    from lab.runs import new_run

    run = new_run(lab_dirs["runs"], config)
    calls = {"n": 0}

    def stop_mid_epoch_two() -> bool:
        calls["n"] += 1
        return calls["n"] == 23 + 5  # epoch 1 has 23 batches of 64 (1437 images): stop in epoch 2

    with pytest.raises(KeyboardInterrupt):
        fit(config, run, lab_dirs["data"], should_stop=stop_mid_epoch_two)
    assert run.status()["state"] == "interrupted"
    assert load_checkpoint(run.checkpoint_path)["epoch"] == 1
    assert any(e["event"] == "step" and e["epoch"] == 2 for e in run.events())

    result = resume_run(run, lab_dirs["data"])
    epochs = [e for e in run.events() if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]  # every epoch exactly once
    assert [e["event"] for e in run.events()].count("start") == 1
    assert run.status()["state"] == "done"
    # same batches, same augmentation, same RNG: the same model as the uninterrupted run
    assert result["test_acc"] == reference["test_acc"]
    assert result["confusion"] == reference["confusion"]
    with pytest.raises(ConfigError, match="already done"):
        resume_run(run, lab_dirs["data"])


def test_missing_dataset_fails_before_creating_a_run(lab_dirs: dict[str, Path]) -> None:
    with pytest.raises(NotFoundError, match="lab data"):
        start_run(tiny_config(dataset="cifar10"), lab_dirs["runs"], lab_dirs["data"])
    assert list_runs(lab_dirs["runs"]) == []


def test_runtime_failure_is_recorded(lab_dirs: dict[str, Path]) -> None:
    from lab.runs import new_run

    run = new_run(lab_dirs["runs"], tiny_config())

    def disk_full() -> bool:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        fit(tiny_config(), run, lab_dirs["data"], should_stop=disk_full)
    status = run.status()
    assert status["state"] == "failed" and "No space left" in status["error"]
    assert run.result() is None


def test_precision_bf16_on_cpu_runs(lab_dirs: dict[str, Path]) -> None:
    run, result = start_run(tiny_config(epochs=1, precision="bf16"), lab_dirs["runs"],
                            lab_dirs["data"])
    assert result["precision"] == "bfloat16"
    assert torch.isfinite(torch.tensor(result["test_loss"]))

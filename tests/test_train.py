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
from lab.runs.checkpoint import load_weights
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
    reference_run, reference = start_run(config, lab_dirs["runs"], lab_dirs["data"])

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
    # and the same best epoch and best.pt: the resume kept the best so far
    best, reference_best = load_weights(run, "best").state, load_weights(reference_run,
                                                                         "best").state
    assert (best["epoch"], best["digest"]) == (reference_best["epoch"], reference_best["digest"])
    assert result["best_epoch"] == reference["best_epoch"] == best["epoch"]
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


def test_a_plateau_stops_early_tests_best_pt_and_prunes(
        lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation made to plateau after epoch 2 (a seam in the loop's validation): with
    patience 2 the run stops before epoch 5, tests best.pt (epoch 2), says so in its records,
    and prunes itself as asked. Its test accuracy is that of best.pt's weights evaluated on
    their own."""
    from lab.cli.render import outcome_lines
    from lab.core import loop
    from lab.core.evaluate import evaluate
    from lab.core.models import build_model
    from lab.core.prepare import split_data
    from lab.data.loader import DeviceLoader
    from lab.data.mirror import decide_mirror
    from lab.runs import check_result

    accs, real = iter([0.3, 0.8, 0.5, 0.8]), loop.evaluate_part
    monkeypatch.setattr(loop, "evaluate_part", lambda parts, data, part, *a, **k: (
        {**real(parts, data, part, *a, **k), "acc": next(accs)} if part == "val"
        else real(parts, data, part, *a, **k)))
    config = tiny_config(epochs=8, patience=2, test_on="best", prune=True, gradcam=0)
    events: list[dict] = []
    run, result = start_run(config, lab_dirs["runs"], lab_dirs["data"], emit=events.append)

    reason = "patience: no val_acc gain for 2 epochs after epoch 2"
    kinds = [(e["event"], e["epoch"]) for e in run.events() if e["event"] != "step"]
    assert kinds == [("start", 0), ("epoch", 1), ("epoch", 2), ("epoch", 3), ("epoch", 4),
                     ("stopped", 5), ("test", 4)]
    assert next(e for e in run.events() if e["event"] == "stopped")["reason"] == reason
    assert check_result(result) is None and run.result() == result
    assert (result["stopped"], result["epochs_trained"], result["epochs"]) == (reason, 4, 8)
    assert (result["best_epoch"], result["best_val_acc"]) == (2, 0.8)
    assert result["tested"] == {"weights": "best", "epoch": 2}
    assert (run.status()["state"], run.status()["epoch"]) == ("done", 4)
    assert outcome_lines(result) == [f"stopped early after epoch 4 of 8: {reason}",
                                     "tested the best weights (epoch 2)"]

    # pruned at the end: best.pt and last.pt (epoch 4) are what is left of the weights
    assert not run.checkpoint_path.exists() and run.status()["pruned"]
    assert load_weights(run, "last").state["epoch"] == 4
    assert any(e["event"] == "pruned" and e["freed_bytes"] > 0 for e in events)

    # best.pt's weights on their own score exactly the recorded test accuracy
    best = load_weights(run, "best").state
    data, _split, test_x, test_y = split_data(config, lab_dirs["data"])
    model = build_model(config.replace(weights="none"), len(data.classes))
    model.load_state_dict(best["model"])
    loader = DeviceLoader.from_numpy(test_x, test_y, "cpu", batch_size=config.eval_batch_size,
                                     image_size=config.image_size)
    scored = evaluate(model, loader, None, want_predictions=True,
                      tta_flip=decide_mirror(config, data.manifest).tta)
    assert (scored["acc"], scored["loss"]) == (result["test_acc"], result["test_loss"])
    model.load_state_dict(load_weights(run, "last").state["model"])
    assert evaluate(model, loader, None)["loss"] != result["test_loss"]  # not the last weights

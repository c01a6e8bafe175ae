"""Faults during training, in-process on real (digits) data: stops mid-epoch, corrupt and
torn checkpoints, a file-size limit while saving, divergence, out-of-memory."""

from __future__ import annotations

import hashlib
import resource
import signal
from pathlib import Path

import pytest
import torch

from lab.core.stopping import Stopped
from lab.errors import DataError, RunFailed
from lab.launch.run import resume_run, start_run
from lab.launch.session import train_run as fit
from lab.levels import level_config
from lab.runs import RunDir, checkpoint, new_run

pytestmark = pytest.mark.slow  # real training runs, stopped and resumed

TINY = dict(dataset="digits", image_size=16, epochs=3, batch_size=64, device="cpu",
            cnn_channels=(8, 16, 16, 32), cnn_hidden=64, lr=3e-3, log_every=5, gradcam=0)
BATCHES = 23  # 1437 training images in batches of 64


def tiny_config(**changes):  # noqa: ANN201 - a RunConfig
    return level_config(3).replace(**{**TINY, **changes})


def stop_after(n: int):  # noqa: ANN201 - a should_stop callback
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= n
    return should_stop


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def final_weights(run: RunDir) -> dict[str, torch.Tensor]:
    return checkpoint.read(run.checkpoint_path)["model"]


def test_a_stop_mid_epoch_saves_where_it_was_and_resume_continues_bit_for_bit(
        lab_dirs: dict[str, Path]) -> None:
    config = tiny_config(augment=True, dropout=0.3)
    reference, ref_result = start_run(config, lab_dirs["runs"], lab_dirs["data"])

    run = new_run(lab_dirs["runs"], config)
    with pytest.raises(Stopped):
        fit(config, run, lab_dirs["data"], should_stop=stop_after(BATCHES + 7))
    saved = checkpoint.read(run.checkpoint_path)
    assert (saved["epoch"], saved["partial"]["epoch"], saved["partial"]["batch"]) == (1, 2, 7)
    assert saved["step"] == BATCHES + 7 and run.status()["state"] == "interrupted"
    with pytest.raises(Stopped):  # stopped again, in the same epoch, later on
        resume_run(run, lab_dirs["data"], should_stop=stop_after(5))
    assert checkpoint.read(run.checkpoint_path)["partial"]["batch"] == 12
    assert checkpoint.read(checkpoint.previous_path(run))["partial"]["batch"] == 7

    events: list[dict] = []
    result = resume_run(run, lab_dirs["data"], emit=events.append)
    assert events[0]["event"] == "resume" and events[0]["batch"] == 12
    assert [e["epoch"] for e in run.events() if e["event"] == "epoch"] == [1, 2, 3]
    steps = [e["step"] for e in run.events() if e["event"] == "step"]
    assert steps == sorted(set(steps)), "a step was logged twice"
    # the same batches, augmentation and dropout draws as the run that never stopped
    ref_events = {e["epoch"]: e for e in reference.events() if e["event"] == "epoch"}
    for e in run.events():
        if e["event"] == "epoch":
            assert (e["train_loss"], e["train_acc"], e["val_acc"]) == (
                ref_events[e["epoch"]]["train_loss"], ref_events[e["epoch"]]["train_acc"],
                ref_events[e["epoch"]]["val_acc"])
    assert result["confusion"] == ref_result["confusion"]
    for name, tensor in final_weights(reference).items():
        assert torch.equal(tensor, final_weights(run)[name]), name


def test_a_corrupt_newest_checkpoint_is_reported_and_the_previous_one_used(
        lab_dirs: dict[str, Path]) -> None:
    config = tiny_config()
    run = new_run(lab_dirs["runs"], config)
    with pytest.raises(Stopped):
        fit(config, run, lab_dirs["data"], should_stop=stop_after(2 * BATCHES + 3))
    assert checkpoint.read(checkpoint.previous_path(run))["epoch"] == 2
    # one flipped bit inside a weight: torch.load alone would not notice
    blob = bytearray(run.checkpoint_path.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    run.checkpoint_path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="digest|unreadable"):
        checkpoint.read(run.checkpoint_path)

    events: list[dict] = []
    resume_run(run, lab_dirs["data"], emit=events.append)
    warning = next(e for e in events if e["event"] == "warning")
    assert "checkpoint.prev.pt (epoch 2)" in warning["message"]
    resume = next(e for e in run.events() if e["event"] == "resume")
    assert resume["epoch"] == 2 and "fallback" in resume
    assert [e["epoch"] for e in run.events() if e["event"] == "epoch"] == [1, 2, 3]
    assert run.status()["state"] == "done"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_with_no_good_checkpoint_left_resume_fails_and_changes_nothing(
        lab_dirs: dict[str, Path], damage: str) -> None:
    config = tiny_config()
    run = new_run(lab_dirs["runs"], config)
    with pytest.raises(Stopped):
        fit(config, run, lab_dirs["data"], should_stop=stop_after(BATCHES + 2))
    for path in (run.checkpoint_path, checkpoint.previous_path(run)):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\0" * len(data))
    before = tree_digest(run.path)
    with pytest.raises(DataError, match="no good checkpoint is left"):
        resume_run(run, lab_dirs["data"])
    assert tree_digest(run.path) == before


def test_a_checkpoint_of_another_model_is_refused_before_anything_is_written(
        lab_dirs: dict[str, Path]) -> None:
    small = new_run(lab_dirs["runs"], tiny_config())
    with pytest.raises(Stopped):
        fit(tiny_config(), small, lab_dirs["data"], should_stop=stop_after(BATCHES + 1))
    wide = new_run(lab_dirs["runs"], tiny_config(cnn_channels=(16, 16, 32, 32)))
    with pytest.raises(Stopped):
        fit(wide.config(), wide, lab_dirs["data"], should_stop=stop_after(BATCHES + 1))
    small.checkpoint_path.write_bytes(wide.checkpoint_path.read_bytes())
    checkpoint.previous_path(small).unlink(missing_ok=True)
    before = tree_digest(small.path)
    with pytest.raises(DataError, match="different model"):
        resume_run(small, lab_dirs["data"])
    assert tree_digest(small.path) == before


def test_a_write_refused_while_saving_keeps_the_previous_checkpoint(
        lab_dirs: dict[str, Path]) -> None:
    """A real file-size limit (RLIMIT_FSIZE) set during epoch 2 makes its checkpoint write fail
    with EFBIG, as a full disk fails with ENOSPC."""
    config = tiny_config()
    run = new_run(lab_dirs["runs"], config)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit_in_epoch_two(event: dict) -> None:
        if event["event"] == "epoch" and event["epoch"] == 2:
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))

    try:
        with pytest.raises(RunFailed, match="checkpoint of epoch 2.*epoch 1 is intact"):
            fit(config, run, lab_dirs["data"], emit=limit_in_epoch_two)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert checkpoint.read(run.checkpoint_path)["epoch"] == 1
    assert not list(run.path.glob("*.tmp")) and not list(run.path.glob(".*.tmp"))
    assert run.status()["state"] == "failed"
    resume_run(run, lab_dirs["data"])  # space is back: the run completes
    assert [e["epoch"] for e in run.events() if e["event"] == "epoch"] == [1, 2, 3]


def test_divergence_names_the_epoch_and_step_and_gives_a_hint(
        lab_dirs: dict[str, Path]) -> None:
    # fp16 overflows within a few steps at this rate; a logging point only at the epoch's end
    config = tiny_config(lr=10.0, precision="fp16", log_every=100)
    with pytest.raises(RunFailed) as caught:
        start_run(config, lab_dirs["runs"], lab_dirs["data"])
    message = str(caught.value)
    assert "diverged" in message and "in epoch 1 at step" in message
    assert "--lr" in message and "--precision fp32" in message
    step = int(message.split("at step ")[1].split(" ")[0])
    batch = int(message.split("(batch ")[1].split(" ")[0])
    assert 1 <= step == batch < BATCHES  # the step it happened, not the logging point's
    (run,) = [RunDir(p) for p in lab_dirs["runs"].iterdir() if p.is_dir()]
    assert run.status()["state"] == "failed" and "diverged" in run.status()["error"]


def test_out_of_memory_names_the_batch_size_and_a_smaller_one(
        lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.core.parts

    real_build = lab.core.parts.build_model

    def build_that_runs_out(config, num_classes):  # noqa: ANN001, ANN202
        model = real_build(config, num_classes)

        def allocate(_module, inputs):  # noqa: ANN001, ANN202
            if model.training and inputs[0].shape[0] >= 64:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        model.register_forward_pre_hook(allocate)
        return model

    monkeypatch.setattr(lab.core.parts, "build_model", build_that_runs_out)
    with pytest.raises(RunFailed, match=r"out of memory on cpu at batch size 64 .*"
                                        r"try --batch-size 32"):
        start_run(tiny_config(), lab_dirs["runs"], lab_dirs["data"])
    _, result = start_run(tiny_config(batch_size=32, epochs=1), lab_dirs["runs"],
                          lab_dirs["data"])
    assert result["test_acc"] > 0


def test_a_checkpoint_from_before_digests_still_resumes(lab_dirs: dict[str, Path]) -> None:
    """Runs interrupted under the previous lab (checkpoint version 1: no digest, no partial)
    resume after an upgrade."""
    config = tiny_config()
    run = new_run(lab_dirs["runs"], config)
    with pytest.raises(Stopped):
        fit(config, run, lab_dirs["data"], should_stop=stop_after(BATCHES))  # after epoch 1
    state = checkpoint.read(run.checkpoint_path)
    old = {k: v for k, v in state.items() if k not in ("digest", "partial")} | {"version": 1}
    torch.save(old, run.checkpoint_path)
    checkpoint.previous_path(run).unlink(missing_ok=True)
    assert checkpoint.read(run.checkpoint_path)["epoch"] == 1
    resume_run(run, lab_dirs["data"])
    assert [e["epoch"] for e in run.events() if e["event"] == "epoch"] == [1, 2, 3]

"""`best.pt` and `load_weights`: written atomically with a digest, read back verified, and
every way of asking for weights a run lacks is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.errors import ConfigError, DataError, NotFoundError
from lab.runs import RunDir
from lab.runs.checkpoint import best_path, load_weights, read_best, save, save_best


def model_state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3, 2), value), "b": torch.arange(3.0)}


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    r = RunDir(tmp_path / "20250301-100000-l3-0c03")
    r.path.mkdir()
    return r


def test_best_round_trips_and_replaces(run: RunDir) -> None:
    save_best(run, model_state(1.0), epoch=2, step=40, val_acc=0.8)
    save_best(run, model_state(2.0), epoch=3, step=60, val_acc=0.9)
    loaded = load_weights(run, "best")
    assert loaded.path == best_path(run)
    assert (loaded.state["epoch"], loaded.state["val_acc"]) == (3, 0.9)
    assert torch.equal(loaded.state["model"]["w"], torch.full((3, 2), 2.0))
    assert sorted(p.name for p in run.path.iterdir()) == ["best.pt"]  # no temp file left


def test_last_is_the_newest_checkpoint(run: RunDir) -> None:
    state = {"epoch": 1, "step": 20, "config": {}, "model": model_state(5.0), "optimizer": {},
             "rng_cpu": torch.zeros(1, dtype=torch.uint8)}
    save(run, state)
    assert torch.equal(load_weights(run, "last").state["model"]["w"], torch.full((3, 2), 5.0))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "not-best"])
def test_a_damaged_best_is_refused(run: RunDir, damage: str) -> None:
    save_best(run, model_state(1.0), epoch=1, step=20, val_acc=0.5)
    path = best_path(run)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # a flipped bit inside the tensor data: only the digest sees it
        state = torch.load(path, weights_only=True)
        state["model"]["w"][0, 0] = 1.5
        torch.save(state, path)
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        torch.save({"epoch": 1, "model": model_state(1.0)}, path)
    with pytest.raises(DataError):
        read_best(path)


@pytest.mark.parametrize(("which", "error"), [("best", NotFoundError), ("last", NotFoundError),
                                               ("newest", ConfigError), ("", ConfigError)])
def test_missing_or_unknown_weights_are_one_line(run: RunDir, which: str,
                                                 error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        load_weights(run, which)
    assert "\n" not in str(info.value)

"""The loop's pieces on their own: Position, the hooks a run uses, the loop with fake hooks, the
state enum and the event schema. No data set and no real training: tiny tensors only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lab.core.collectives import Dist
from lab.core.hooks import Hook, Hooks, Position
from lab.core.loop import fit, train_epoch
from lab.core.parts import Parts
from lab.core.prepare import Prepared
from lab.core.stopping import Stopped
from lab.data.loader import DeviceLoader
from lab.errors import DataError
from lab.launch.hooks import (
    Checkpointer,
    EventLog,
    Meter,
    Progress,
    StatusFile,
    restore,
    snapshot,
)
from lab.levels import level_config
from lab.runs import JOB_FINISHED, RUN_FINISHED, State, check_event, checkpoint, new_run
from lab.runs.store import read_jsonl_counted

CONFIG = level_config(3).replace(dataset="digits", image_size=16, epochs=2, device="cpu",
                                 batch_size=4, log_every=2)


class Recorder(Hook):
    """Writes down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        self.calls.append(("event", dict(event)))

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        self.calls.append(("batch", (epoch, batch, batches, step, images)))

    def on_epoch_end(self, position: Position) -> None:
        self.calls.append(("epoch_end", (position.epoch, position.step)))

    def on_stop(self, position: Position) -> None:
        self.calls.append(("stop", (position.epoch, position.batch, position.seen)))


def _parts(seed: int = 0) -> Parts:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Parts(torch.device("cpu"), None, model, optimizer, None, None,
                 nn.CrossEntropyLoss(), log_every=2, net=model, eval_net=model)


def _loader(n: int = 12, batch: int = 4) -> DeviceLoader:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 3, n)
    return DeviceLoader.from_numpy(x, y, "cpu", batch_size=batch, image_size=8, shuffle=True,
                                   seed=1)


def _data() -> Prepared:
    train, val = _loader(), _loader(8, 8)
    return Prepared(data=None, split=None, train=train, val=val, test=val,  # type: ignore[arg-type]
                    test_labels=np.zeros(0), test_x=np.zeros(0), notes=[], augmentation="none",
                    train_images=train.num_samples)


# ---- Position ------------------------------------------------------------------------------
@pytest.mark.parametrize("position", [
    Position(),
    Position(epoch=2, step=30, best_val_acc=0.5),
    Position(epoch=1, step=17, batch=3, loss_sum=4.5, correct=7, seen=12, seconds=1.25,
             best_val_acc=0.25),
])
def test_position_survives_the_checkpoint_format(position: Position) -> None:
    state = position.to_state()
    assert (state["partial"] is None) == (not position.mid_epoch)
    assert Position.from_state(state) == position


def test_a_version_2_checkpoint_position_reads_as_written() -> None:
    """The fields written by lab before the Position type existed."""
    old = {"epoch": 1, "step": 9, "best_val_acc": 0.4,
           "partial": {"epoch": 2, "batch": 3, "loss_sum": 2.0, "correct": 5, "seen": 12,
                       "seconds": 0.5}}
    p = Position.from_state(old)
    assert (p.epoch, p.step, p.batch, p.seen, p.seconds) == (1, 9, 3, 12, 0.5)
    assert p.to_state() == old


def test_next_epoch_clears_the_partial_sums_and_keeps_the_best() -> None:
    p = Position(epoch=1, step=5, batch=2, loss_sum=1.0, correct=1, seen=4, best_val_acc=0.6)
    p.next_epoch(0.4)
    assert (p.epoch, p.batch, p.seen, p.best_val_acc) == (2, 0, 0, 0.6)


# ---- the loop, with fake hooks ---------------------------------------------------------------
def test_fit_calls_hooks_in_order_records_before_checkpoints() -> None:
    rec = Recorder()
    position = fit(_parts(), _data(), Position(), 2, rec)
    assert (position.epoch, position.step) == (2, 6)
    kinds = [k for k, _ in rec.calls]
    # per epoch: 3 batches, step events at logging points, then the epoch event, then its end
    first_end = kinds.index("epoch_end")
    assert kinds[first_end - 1] == "event" and rec.calls[first_end - 1][1]["event"] == "epoch"
    epochs = [e for k, e in rec.calls if k == "event" and e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(check_event(e) is None for k, e in rec.calls if k == "event")
    steps = [e["step"] for k, e in rec.calls if k == "event" and e["event"] == "step"]
    assert steps == [2, 3, 4, 6]  # every log_every steps, and at each epoch's last batch


def test_a_stop_mid_epoch_reaches_on_stop_with_the_sums_and_raises() -> None:
    rec, asked = Recorder(), {"n": 0}

    def stop() -> bool:
        asked["n"] += 1
        return asked["n"] == 2  # after the second batch of epoch 1

    position = Position()
    with pytest.raises(Stopped):
        fit(_parts(), _data(), position, 2, rec, should_stop=stop)
    assert rec.calls[-1] == ("stop", (0, 2, 8))
    assert position.mid_epoch and position.step == 2 and "epoch_end" not in dict(rec.calls)


def test_resuming_a_partial_epoch_equals_running_it_whole() -> None:
    whole = _parts()
    train_epoch(whole, _loader(), Position(), Hook())
    parts, position = _parts(), Position()
    with pytest.raises(Stopped):
        fit(parts, _data(), position, 1, Hook(), should_stop=lambda: True)
    assert position.batch == 1
    stats = train_epoch(parts, _loader(), position, Hook())
    assert stats is not None and position.step == 3
    for a, b in zip(whole.model.parameters(), parts.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_nan_loss_names_its_step() -> None:
    parts = _parts()
    with torch.no_grad():
        parts.model[1].weight.fill_(float("nan"))
    with pytest.raises(Exception, match=r"diverged.*epoch 1 at step 1 \(batch 1 of 3\)"):
        train_epoch(parts, _loader(), Position(), Hook())


def test_hooks_call_each_hook_in_order_and_skip_none() -> None:
    a, b = Recorder(), Recorder()
    hooks = Hooks(a, None, b)
    hooks.on_epoch_end(Position(epoch=1, step=3))
    hooks.on_event({"event": "x"})
    assert a.calls == b.calls == [("epoch_end", (1, 3)), ("event", {"event": "x"})]


# ---- the run's hooks, without training -------------------------------------------------------
def test_event_log_and_status_file_write_the_records(lab_dirs: dict[str, Path]) -> None:
    run = new_run(lab_dirs["runs"], CONFIG)
    log, status = EventLog(run), StatusFile(run)
    log.on_event({"event": "step", "epoch": 1, "step": 2, "loss": 1.5, "lr": 0.1})
    status.on_epoch_end(Position(epoch=1, step=3))
    assert run.events() == [{"event": "step", "epoch": 1, "step": 2, "loss": 1.5, "lr": 0.1}]
    assert (run.status()["state"], run.status()["epoch"]) == ("running", 1)
    status.on_stop(Position(epoch=1, step=4, batch=1))
    assert run.status()["step"] == 4 and json.loads(run.status_path.read_text())["epoch"] == 1


def test_progress_forwards_events_and_batches() -> None:
    seen: list[dict] = []
    p = Progress(seen.append)
    p.on_event({"event": "epoch", "epoch": 1})
    p.on_batch(1, 2, 3, 4, 5)
    assert seen == [{"event": "epoch", "epoch": 1},
                    {"event": "batch", "epoch": 1, "batch": 2, "batches": 3, "step": 4,
                     "images": 5}]


def test_meter_counts_epochs_only() -> None:
    m = Meter(images_per_epoch=100)
    assert m.images_per_s is None
    for event in ({"event": "step", "seconds": 9.0}, {"event": "epoch", "seconds": 2.0},
                  {"event": "epoch", "seconds": 3.0}):
        m.on_event(event)
    assert (m.images, m.seconds, m.images_per_s) == (200, 5.0, 40.0)


def test_checkpointer_snapshot_and_restore_round_trip(lab_dirs: dict[str, Path]) -> None:
    run = new_run(lab_dirs["runs"], CONFIG)
    parts = _parts(seed=1)
    train_epoch(parts, _loader(), Position(), Hook())  # optimizer state worth keeping
    where = Position(epoch=1, step=3, batch=1, loss_sum=1.0, correct=2, seen=4, seconds=0.1)
    Checkpointer(run, parts, CONFIG, Dist.single()).on_stop(where)
    loaded = checkpoint.load_latest(run)
    assert loaded is not None and loaded.state["config"] == CONFIG.to_dict()
    fresh = _parts(seed=2)
    assert restore(fresh, loaded, Dist.single()) == where
    for a, b in zip(parts.model.parameters(), fresh.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert fresh.optimizer.state_dict()["state"].keys() == \
        parts.optimizer.state_dict()["state"].keys()
    # the RNG stream continues from the checkpoint
    assert torch.equal(torch.get_rng_state(), loaded.state["rng_cpu"])


def test_restore_refuses_another_models_checkpoint(lab_dirs: dict[str, Path]) -> None:
    state = {**snapshot(_parts(), Position(), CONFIG), "digest": "-"}
    other = _parts()
    other.model[1] = nn.Linear(3 * 8 * 8, 5)
    with pytest.raises(DataError, match="different model"):
        restore(other, checkpoint.Loaded(state, Path("x.pt"), None), Dist.single())


# ---- states and events -------------------------------------------------------------------------
def test_state_is_its_value_everywhere() -> None:
    assert State.DONE == "done" and f"{State.FAILED}" == "failed" and str(State.QUEUED) == "queued"
    assert json.dumps({"s": State.INTERRUPTED}) == '{"s": "interrupted"}'
    assert State.INTERRUPTED in RUN_FINISHED and State.INTERRUPTED not in JOB_FINISHED


@pytest.mark.parametrize(("line", "ok"), [
    ({"event": "epoch", "epoch": 1, "val_acc": 0.5}, True),
    ({"event": "future-kind", "whatever": [1, 2]}, True),
    ({"event": "epoch", "epoch": 1, "val_acc": "high"}, False),
    ({"event": "step", "epoch": True, "step": 1}, False),
    ({"event": "step", "epoch": 1, "step": 1.5}, False),
    ({"event": "step", "epoch": 1, "loss": float("nan")}, False),
    ({"event": "test", "test_acc": 10 ** 5000}, False),  # no float can hold it: pct() overflows
    ({"epoch": 1}, False),
    ([1, 2], False),
    ("epoch", False),
])
def test_check_event_table(line: Any, ok: bool) -> None:
    assert (check_event(line) is None) == ok


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the file is rewritten
@given(obj=st.dictionaries(st.sampled_from(["event", "epoch", "step", "val_acc", "loss", "x"]),
                           _json, max_size=6))
def test_readers_keep_only_lines_whose_numbers_are_numbers(obj: dict, tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(obj) + "\n")
    events, bad = read_jsonl_counted(path)
    assert len(events) + bad == 1
    for event in events:  # whatever a reader gets, it can compute with
        for key in ("epoch", "step"):
            assert key not in event or isinstance(event[key], int)
        for key in ("val_acc", "loss"):
            assert key not in event or math.isfinite(event[key])

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
from lab.core.loop import fit, is_logging_point, train_epoch
from lab.core.parts import Parts
from lab.core.prepare import Prepared
from lab.core.stopping import Patience, Stopped
from lab.data.loader import DeviceLoader
from lab.errors import DataError
from lab.launch.hooks import (
    BestWeights,
    Checkpointer,
    EventLog,
    Meter,
    Progress,
    StatusFile,
    recall_best,
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


@pytest.mark.parametrize(("accs", "best_epoch"), [
    ([0.5, 0.5, 0.4], 1),  # a tie keeps the earlier epoch
    ([0.0, 0.0], 1),  # the first epoch is the best so far, whatever its accuracy
    ([0.2, 0.6, 0.6, 0.7], 4),
    ([0.3, 0.9, 0.1, 0.9], 2),
])
def test_the_best_epoch_is_the_first_with_the_highest_val_acc(accs: list[float],
                                                               best_epoch: int) -> None:
    p = Position()
    for acc in accs:
        p.next_epoch(acc)
    assert (p.best_epoch, p.best_val_acc) == (best_epoch, max(accs))
    assert Position.from_state(p.to_state()) == p  # a checkpoint keeps it


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
    # step 1 at once, then every log_every steps, and at each epoch's last batch
    assert steps == [1, 2, 3, 4, 6]


@pytest.mark.parametrize(("log_every", "first_steps"), [
    (20, [1, 2, 4, 8, 16, 20, 40, 60]),  # the default: dense at the start, then every 20
    (1, [1, 2, 3, 4, 5, 6, 7, 8]),
    (2, [1, 2, 4, 6, 8, 10, 12, 14]),
    (5, [1, 2, 4, 5, 10, 15, 20, 25]),
    (64, [1, 2, 4, 8, 16, 32, 64, 128]),
    (100, [1, 2, 4, 8, 16, 32, 64, 100]),
])
def test_the_first_step_is_logged_at_once_then_early_steps_densely(
        log_every: int, first_steps: list[int]) -> None:
    """A new run's curve has a point after its first step, not after `log_every` steps."""
    logged = [s for s in range(1, 1000) if is_logging_point(s, log_every)]
    assert logged[:8] == first_steps


@given(st.integers(1, 500), st.integers(1, 5000))
def test_logging_points_past_the_start_are_every_log_every_steps(log_every: int,
                                                                 step: int) -> None:
    if step >= log_every:
        assert is_logging_point(step, log_every) == (step % log_every == 0)


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


# ---- best weights and early stopping, with a scripted validation ---------------------------------
@pytest.fixture
def scripted_val(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the setter
    """The loop's validation reports the accuracies it is given (epoch 1 first): a plateau, a
    dip or a tie on demand, while training and the rest of the evaluation stay real."""
    from lab.core import loop

    real = loop.evaluate_part

    def script(accs: list[float]) -> None:
        left = iter(accs)

        def evaluate_part(parts: Parts, data: Prepared, part: str, *args: Any,
                          **kwargs: Any) -> dict[str, Any]:
            result = real(parts, data, part, *args, **kwargs)  # type: ignore[arg-type]
            return {**result, "acc": next(left)} if part == "val" else result
        monkeypatch.setattr(loop, "evaluate_part", evaluate_part)
    return script


@pytest.mark.parametrize(("accs", "patience", "trained", "reason"), [
    # a plateau after epoch 2: two epochs without gain, then stop before epoch 5
    ([0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], 2, 4,
     "patience: no val_acc gain for 2 epochs after epoch 2"),
    # a gain in epoch 3 restarts the count
    ([0.5, 0.4, 0.6, 0.5, 0.6, 0.6, 0.6, 0.6], 2, 5,
     "patience: no val_acc gain for 2 epochs after epoch 3"),
    ([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], 1, 2,
     "patience: no val_acc gain for 1 epoch after epoch 1"),
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 1, 8, None),  # always better: all epochs
    ([0.5] * 8, 0, 8, None),  # patience 0: off
    ([0.5] * 8, 7, 8, None),  # patience runs out only after the last epoch: nothing to skip
])
def test_patience_stops_at_the_right_epoch_and_says_why(
        scripted_val: Any, accs: list[float], patience: int, trained: int,
        reason: str | None) -> None:
    scripted_val(accs)
    rec = Recorder()
    position = fit(_parts(), _data(), Position(), 8, rec, early_stop=Patience(patience))
    assert position.epoch == trained
    events = [e for k, e in rec.calls if k == "event"]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, trained + 1))
    stopped = [e for e in events if e["event"] == "stopped"]
    assert stopped == ([{"event": "stopped", "epoch": trained + 1, "step": position.step,
                         "reason": reason}] if reason else [])
    assert all(check_event(e) is None for e in stopped)
    if reason:  # what the session asks again for the result
        assert Patience(patience)(position) == reason


def test_a_run_resumed_after_its_patience_ran_out_stops_at_once() -> None:
    """Killed between the stop and the test: its resume trains nothing more."""
    rec = Recorder()
    where = Position(epoch=4, step=12, best_val_acc=0.6, best_epoch=2)
    fit(_parts(), _data(), where, 8, rec, early_stop=Patience(2))
    assert [k for k, _ in rec.calls] == ["event"]
    assert rec.calls[0][1]["event"] == "stopped" and rec.calls[0][1]["epoch"] == 5


class StateAtEpochEnd(Hook):
    """A copy of the model's state at each epoch's end."""

    def __init__(self, parts: Parts) -> None:
        self.parts, self.states = parts, {}

    def on_epoch_end(self, position: Position) -> None:
        self.states[position.epoch] = {k: v.clone() for k, v in
                                       self.parts.model.state_dict().items()}


@pytest.mark.parametrize(("accs", "saved"), [
    ([0.3, 0.5, 0.5, 0.4, 0.7], [1, 2, 5]),  # a tie and a dip write nothing
    ([0.3, 0.7, 0.5], [1, 2]),  # the best is not the last
])
def test_best_pt_is_written_on_improvement_only_with_that_epochs_weights(
        lab_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, scripted_val: Any,
        accs: list[float], saved: list[int]) -> None:
    scripted_val(accs)
    writes: list[int] = []
    real_save = checkpoint.save_best

    def save_best(run: Any, model_state: Any, **fields: Any) -> None:
        writes.append(fields["epoch"])
        real_save(run, model_state, **fields)
    monkeypatch.setattr(checkpoint, "save_best", save_best)
    run, parts = new_run(lab_dirs["runs"], CONFIG), _parts()
    states = StateAtEpochEnd(parts)
    fit(parts, _data(), Position(), len(accs), Hooks(BestWeights(run, parts), states))
    assert writes == saved
    best = checkpoint.load_weights(run, "best").state
    assert (best["epoch"], best["val_acc"]) == (saved[-1], max(accs))
    assert best.keys().isdisjoint({"optimizer", "scheduler", "scaler"})  # weights only
    for name, tensor in states.states[saved[-1]].items():
        assert torch.equal(best["model"][name], tensor), name
    if saved[-1] != len(accs):  # and not the last epoch's, which differ
        assert any(not torch.equal(best["model"][k], v)
                   for k, v in states.states[len(accs)].items())


def test_a_checkpoint_without_a_best_epoch_finds_it_in_the_events(
        lab_dirs: dict[str, Path]) -> None:
    run = new_run(lab_dirs["runs"], CONFIG)
    for epoch, acc in enumerate([0.4, 0.6, 0.6, 0.9], start=1):  # epoch 4: after the checkpoint
        run.append_event({"event": "epoch", "epoch": epoch, "step": 3 * epoch, "val_acc": acc})
    where = Position(epoch=3, step=9, best_val_acc=0.6)
    recall_best(run, where)
    assert (where.best_epoch, where.best_val_acc) == (2, 0.6)
    known = Position(epoch=3, step=9, best_val_acc=0.4, best_epoch=1)
    recall_best(run, known)
    assert known.best_epoch == 1  # a checkpoint that knows is not second-guessed

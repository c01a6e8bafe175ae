"""Smaller records: `lab runs` shows the disk each run takes, and pruning a finished run drops
its resume checkpoints, keeps best.pt and the last weights (last.pt, which `load_weights`
reads), frees what it says, refuses a run still training, and leaves a run `lab resume` names
as pruned."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lab.errors import ConfigError, DataError
from lab.launch.run import resume_run
from lab.levels import level_config
from lab.runs import RunDir, State, disk_bytes, new_run, process_start
from lab.runs.checkpoint import best_path, last_path, load_weights, save, save_best
from lab.runs.prune import prune
from lab.views.sizes import bytes_text
from tests.cli_inprocess import one_click_command, run_cli_io

CONFIG = level_config(3).replace(dataset="digits", image_size=16, epochs=2, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def _cli() -> Iterator[None]:
    yield from one_click_command()


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((64, 64), value), "b": torch.arange(64.0)}


def trained_run(runs: Path, state: State = State.DONE, epochs: int = 2) -> RunDir:
    """A run with a checkpoint per epoch (optimizer moments as big as the weights: what
    pruning removes), best.pt of epoch 1 and the given state."""
    run = new_run(runs, CONFIG)
    for epoch in range(1, epochs + 1):
        save(run, {"epoch": epoch, "step": 10 * epoch, "config": CONFIG.to_dict(),
                   "model": weights(float(epoch)),
                   "optimizer": {"state": {0: {"exp_avg": torch.ones(64, 64) * epoch}}},
                   "rng_cpu": torch.get_rng_state()})
    save_best(run, weights(1.0), epoch=1, step=10, val_acc=0.9)
    alive = {"pid": os.getpid(), "pid_start": process_start()} if state == State.RUNNING else {}
    run.update_status(state=state, **alive)
    return run


def files_of(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.path.iterdir()}


@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.INTERRUPTED])
def test_prune_keeps_best_and_last_weights_and_frees_the_checkpoints(
        tmp_path: Path, state: State) -> None:
    run = trained_run(tmp_path, state)
    last_before = load_weights(run, "last").state
    best_before = best_path(run).read_bytes()
    before = disk_bytes(run.path)
    freed = prune(run)
    assert freed == before - disk_bytes(run.path) > 0
    assert sorted(p.name for p in run.path.iterdir()) == [
        "best.pt", "config.json", "last.pt", "status.json"]
    last = load_weights(run, "last")
    assert last.path == last_path(run) and (last.state["epoch"], last.state["step"]) == (2, 20)
    assert "optimizer" not in last.state
    for name, tensor in last_before["model"].items():
        assert torch.equal(last.state["model"][name], tensor)
    assert best_path(run).read_bytes() == best_before  # untouched
    assert run.status()["pruned"] and run.status()["state"] == state
    assert prune(run) == 0  # once is enough


@pytest.mark.parametrize("state", [State.RUNNING, State.CREATED])
def test_prune_refuses_a_run_still_training_and_changes_nothing(
        tmp_path: Path, state: State) -> None:
    run = trained_run(tmp_path, state)
    before = files_of(run)
    with pytest.raises(ConfigError, match=f"is {state}: only a finished run can be pruned"):
        prune(run)
    assert files_of(run) == before


def test_prune_refuses_when_the_newest_checkpoint_is_damaged(tmp_path: Path) -> None:
    """Its last weights would silently become the epoch before."""
    run = trained_run(tmp_path)
    run.checkpoint_path.write_bytes(run.checkpoint_path.read_bytes()[:100])
    before = files_of(run)
    with pytest.raises(DataError, match="pruning would keep an older epoch"):
        prune(run)
    assert files_of(run) == before


@pytest.mark.parametrize("state", [State.DONE, State.INTERRUPTED])
def test_resume_of_a_pruned_run_says_it_was_pruned(tmp_path: Path, state: State) -> None:
    run = trained_run(tmp_path, state)
    prune(run)
    before = files_of(run)
    with pytest.raises(ConfigError, match=f"run {run.id} was pruned") as info:
        resume_run(run, tmp_path / "data")
    assert "\n" not in str(info.value)
    assert files_of(run) == before


@pytest.mark.parametrize(("n", "text"), [
    (None, "–"), (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (9_960, "10 kB"),
    (1_234_567, "1.2 MB"), (134_217_728, "134 MB"), (999_600, "1.0 MB"), (5 * 10**12, "5.0 TB"),
])
def test_sizes_read_as_people_read_them(n: int | None, text: str) -> None:
    assert bytes_text(n) == text


@pytest.mark.slow  # a dozen in-process commands
def test_lab_runs_shows_each_runs_disk_and_prune_frees_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    done, other, running = trained_run(runs), trained_run(runs), trained_run(runs, State.RUNNING)
    sizes = {r.id: sum(p.stat().st_size for p in r.path.rglob("*") if p.is_file())
             for r in (done, other, running)}
    code, out, _ = run_cli_io(["runs", "--json", "--runs-dir", str(runs)], capsys)
    assert code == 0
    assert {row["run_id"]: row["disk_bytes"] for row in json.loads(out)} == sizes
    code, out, _ = run_cli_io(["runs", "--runs-dir", str(runs)], capsys)
    assert code == 0 and "Disk" in out
    assert all(bytes_text(n) in out for n in sizes.values())

    # a run still training among the named ones: one line, and nothing pruned
    code, out, err = run_cli_io(["runs", "--prune", done.id, running.id, "--runs-dir",
                                  str(runs)], capsys)
    assert code != 0 and err.strip().splitlines() == [
        f"lab: error: run {running.id} is running: only a finished run can be pruned"]
    assert done.checkpoint_path.exists()

    code, out, _ = run_cli_io(["runs", "--prune", "--json", done.id, "--runs-dir", str(runs)],
                               capsys)
    report = json.loads(out)
    freed = sizes[done.id] - disk_bytes(done.path)
    assert code == 0 and report == {"pruned": [{"run_id": done.id, "freed_bytes": freed}],
                                    "freed_bytes": freed}
    # no names: every done run; the running one is left alone
    code, out, _ = run_cli_io(["runs", "--prune", "--runs-dir", str(runs)], capsys)
    assert code == 0 and f"{done.id}: nothing to prune" in out
    assert f"{other.id}: {bytes_text(sizes[other.id] - disk_bytes(other.path))} freed" in out
    assert running.checkpoint_path.exists()
    code, out, _ = run_cli_io(["runs", "--runs-dir", str(runs)], capsys)
    assert "* pruned" in out

    code, _, err = run_cli_io(["runs", done.id, "--runs-dir", str(runs)], capsys)
    assert code != 0 and "runs are named only with --prune" in err

"""Pruning: a finished run drops its resume checkpoints (two full copies with optimizer state,
the bulk of its disk) and keeps what is still of use: `best.pt` and the last weights as
`last.pt`, which `load_weights(run, "last")` reads once the checkpoints are gone.

A pruned run cannot be resumed; its status.json says when it was pruned (`pruned`), so
`lab resume` can say why instead of starting it over.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import ConfigError, DataError
from lab.runs import RunDir, State, disk_bytes, now_iso
from lab.runs.checkpoint import last_path, load_latest, previous_path, save_last

_UNFINISHED = (State.CREATED, State.RUNNING)


def prune_problem(run: RunDir) -> ConfigError | None:
    """Why `run` may not be pruned now (it is still being trained), or None."""
    state = run.live_state()
    if state in _UNFINISHED:
        return ConfigError(f"run {run.id} is {state}: only a finished run can be pruned")
    return None


def resume_files(run: RunDir) -> list[Path]:
    """The checkpoints only a resume needs (a `new` one a crash left behind included)."""
    return [p for p in (run.checkpoint_path, previous_path(run),
                        run.path / "checkpoint.new.pt") if p.exists()]


def prune(run: RunDir) -> int:
    """Replace the resume checkpoints of a finished run by `last.pt`; the bytes freed (0 for
    a run with nothing to drop). Refused for a run still training, and for one whose newest
    checkpoint is unreadable (its last weights would be lost), before anything changes."""
    problem = prune_problem(run)
    if problem is not None:
        raise problem
    return prune_files(run)


def prune_files(run: RunDir) -> int:
    """`prune` without the state check: the end of a run that asked for it (`--set prune=true`)
    calls this once it is done. `last.pt` is written before anything is removed, so a crash
    midway leaves a run that can be pruned again."""
    doomed = resume_files(run)
    if not doomed:
        return 0
    before = disk_bytes(run.path)
    loaded = load_latest(run)
    if loaded is not None and loaded.skipped:
        raise DataError(f"run {run.id}: {loaded.skipped}; pruning would keep an older epoch's "
                        "weights", hint="remove the damaged checkpoint by hand if that is fine")
    if loaded is not None:
        save_last(run, loaded.state["model"], epoch=int(loaded.state["epoch"]),
                  step=int(loaded.state["step"]))
    run.update_status(pruned=now_iso())
    for path in doomed:
        path.unlink(missing_ok=True)
    return before - disk_bytes(run.path)


__all__ = ["last_path", "prune", "prune_files", "prune_problem", "resume_files"]

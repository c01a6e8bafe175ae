"""Checkpoints: written so a crash or a full disk never leaves a run without a good one.

A run keeps two files, `checkpoint.pt` (the newest) and `checkpoint.prev.pt` (the one before).
A save writes the new file beside them (temp file, fsync), moves the newest to `prev`, then
renames the new one into place: at every instant at least one complete checkpoint exists, and a
save that fails (disk full) leaves both untouched. Each checkpoint carries a SHA-256 digest of
its tensors, because torch's own format loads a flipped bit without complaint; `load_latest`
checks it, falls back to `prev` when the newest is torn or corrupt, and says so.

`best.pt` holds only the weights of the epoch with the best validation accuracy (what `predict`,
`export` and `gradcam --weights best` use); it is written atomically with its own digest.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab.errors import ConfigError, DataError, NotFoundError, RunFailed
from lab.runs import RunDir, atomic_write_bytes

VERSION = 2
_REQUIRED = ("epoch", "step", "config", "model", "optimizer", "rng_cpu", "digest")


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested state, in a fixed order (dict keys sorted by their repr)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=repr):
            yield from _tensors(obj[key])
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def digest(state: dict[str, Any]) -> str:
    """SHA-256 over the bytes of the model and optimizer tensors (what training cannot redo)."""
    h = hashlib.sha256()
    for part in ("model", "optimizer"):
        for t in _tensors(state.get(part)):
            t = t.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def previous_path(run: RunDir) -> Path:
    return run.path / "checkpoint.prev.pt"


def save(run: RunDir, state: dict[str, Any]) -> None:
    """Write `state` as the run's newest checkpoint, keeping the one before as `prev`.

    A failure (disk full, read-only file system) leaves the existing checkpoints as they were
    and is raised as one line that says which epoch is still safe."""
    state = {**state, "version": VERSION}
    state["digest"] = digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    new = run.path / "checkpoint.new.pt"
    try:
        atomic_write_bytes(new, buf.getvalue())
        if run.checkpoint_path.exists():
            os.replace(run.checkpoint_path, previous_path(run))
        os.replace(new, run.checkpoint_path)
    except OSError as exc:
        new.unlink(missing_ok=True)
        raise _save_failed(run, state["epoch"], exc, "the checkpoint") from None


def _save_failed(run: RunDir, epoch: int, exc: OSError, what: str,
                 then: str | None = None) -> RunFailed:
    """A refused write (disk full, a file-size limit, read-only) as one line saying which
    epoch is still safe on disk."""
    kept = _epoch_on_disk(run)
    safe = "no earlier checkpoint exists" if kept is None else \
        f"the checkpoint of epoch {kept} is intact"
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return RunFailed(f"could not save {what} of epoch {epoch}: {exc.strerror or exc}; {safe}",
                     hint=("free some disk space, then " if full else "") +
                     (then or f"`lab resume {run.id}`"))


def _epoch_on_disk(run: RunDir) -> int | None:
    for path in (run.checkpoint_path, previous_path(run)):
        try:
            return int(read(path)["epoch"])
        except (DataError, RunFailed, KeyError, TypeError, ValueError):
            continue
    return None


def _load(path: Path, what: str, missing: Exception) -> Any:
    """torch.load with weights_only (a file never runs code); a torn or foreign file is one
    DataError line, a missing one `missing`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise missing from None
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or not a torch file
        raise DataError(f"{what}{path} is unreadable ({type(exc).__name__}): truncated or "
                        "corrupt") from None


def read(path: Path) -> dict[str, Any]:
    """Read and verify one checkpoint (weights_only: a checkpoint never runs code)."""
    state = _load(path, "checkpoint ",
                  RunFailed(f"{path} does not exist: this run has no checkpoint"))
    version = state.get("version") if isinstance(state, dict) else None
    if version not in (1, VERSION):
        raise DataError(f"checkpoint {path} is not a lab checkpoint of this version")
    # Version 1 (lab before checkpoint digests) is read as it was written: no digest to check.
    missing = [k for k in _REQUIRED if k not in state and not (version == 1 and k == "digest")]
    if missing:
        raise DataError(f"checkpoint {path} lacks {', '.join(missing)}")
    if version == VERSION and digest(state) != state["digest"]:
        raise DataError(f"checkpoint {path} is corrupt: its tensors do not match their digest")
    return state


@dataclass
class Loaded:
    state: dict[str, Any]
    path: Path
    skipped: str | None  # why the newest checkpoint was passed over, if it was


def load_latest(run: RunDir) -> Loaded | None:
    """The newest good checkpoint of `run`, or None when it has none at all.

    A torn or corrupt newest file is reported in `skipped` and `prev` is used; when every
    file present is bad, the newest one's error is raised (nothing is guessed)."""
    paths = [p for p in (run.checkpoint_path, previous_path(run)) if p.exists()]
    if not paths:
        return None
    first_error: DataError | None = None
    for path in paths:
        try:
            state = read(path)
        except DataError as exc:
            first_error = first_error or exc
            continue
        return Loaded(state, path, str(first_error) if first_error else None)
    assert first_error is not None
    raise DataError(first_error.message, hint="no good checkpoint is left: start the run again")


def load_model_state(model: nn.Module, state: dict[str, Any], source: Path | str) -> None:
    """`model.load_state_dict` with a mismatch (a checkpoint of another model) as one line."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0] if first else ""
        raise DataError(f"{source} holds weights of a different model ({detail[:160]})",
                        hint="use a checkpoint or weights file made for this level") from None


# ---- best.pt and last.pt: weights only ----------------------------------------------------
# best.pt: the epoch with the best validation accuracy; last.pt: the newest checkpoint's weights,
# kept when a finished run is pruned (`lab.runs.prune`). Neither has optimizer state.
_WEIGHTS_REQUIRED = {"best": ("epoch", "step", "val_acc", "model", "digest"),
                     "last": ("epoch", "step", "model", "digest")}
WEIGHTS = ("last", "best")  # what --weights names: the newest checkpoint, or best.pt


def best_path(run: RunDir) -> Path:
    return run.path / "best.pt"


def last_path(run: RunDir) -> Path:
    return run.path / "last.pt"


def _save_weights(path: Path, kind: str, model_state: dict[str, Any], **fields: Any) -> None:
    """Replace `path` atomically (temp file, fsync, rename): a crash leaves the old one or
    the new one, never half of either."""
    state = {"version": VERSION, "kind": kind, **fields, "model": model_state}
    state["digest"] = digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_best(run: RunDir, model_state: dict[str, Any], *, epoch: int, step: int,
              val_acc: float) -> None:
    """best.pt; a refused write is the one line `save` gives (the old best.pt stays whole)."""
    try:
        _save_weights(best_path(run), "best", model_state, epoch=epoch, step=step,
                      val_acc=float(val_acc))
    except OSError as exc:
        raise _save_failed(run, epoch, exc, "best.pt (the best weights) with the checkpoint") \
            from None


def save_last(run: RunDir, model_state: dict[str, Any], *, epoch: int, step: int) -> None:
    try:
        _save_weights(last_path(run), "last", model_state, epoch=epoch, step=step)
    except OSError as exc:
        raise _save_failed(run, epoch, exc, "the last weights (last.pt)",
                           then=f"`lab runs --prune {run.id}` again") from None


def read_weights(path: Path, kind: str) -> dict[str, Any]:
    """Read and verify a `best.pt` or `last.pt` (weights_only, digest checked)."""
    state = _load(path, "", NotFoundError(f"{path} does not exist"))
    if not isinstance(state, dict) or state.get("kind") != kind or \
            any(k not in state for k in _WEIGHTS_REQUIRED[kind]):
        raise DataError(f"{path} is not a lab {kind}.pt of this version")
    if digest(state) != state["digest"]:
        raise DataError(f"{path} is corrupt: its tensors do not match their digest")
    return state


def read_best(path: Path) -> dict[str, Any]:
    return read_weights(path, "best")


def load_weights(run: RunDir, which: str = "last") -> Loaded:
    """The weights `--weights` names: `last` (the newest good checkpoint, or `last.pt` once
    the run was pruned) or `best` (best.pt). Missing ones are one line that says what exists
    instead."""
    if which not in WEIGHTS:
        raise ConfigError(f"--weights {which!r}: must be one of {', '.join(WEIGHTS)}")
    if which == "best":
        path = best_path(run)
        if not path.exists():
            raise NotFoundError(f"run {run.id} has no best.pt (made before lab kept one, or "
                                "no epoch finished)", hint="use --weights last")
        return Loaded(read_best(path), path, None)
    loaded = load_latest(run)
    if loaded is None and last_path(run).exists():
        return Loaded(read_weights(last_path(run), "last"), last_path(run), None)
    if loaded is None:
        raise NotFoundError(f"run {run.id} has no checkpoint: it never finished an epoch",
                            hint="train it first, or `lab resume` it")
    return loaded

"""The study's comparison: which runs stand for each level and how they compare with Level 1.

Clients render these rows; they never recompute them, so the CLI table, the console's compare
screen and the Markdown report always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import DataError, LabError
from lab.levels import LEVELS
from lab.runs import RunDir, list_runs, resolve_run

OnSkip = Callable[[str, str], None]  # (run id, why): a run left out of the comparison


def latest_finished_by_level(runs_dir: Path) -> list[RunDir]:
    """The newest finished run of each level, in level order."""
    chosen: dict[int, RunDir] = {}
    for run in list_runs(runs_dir):  # newest first
        try:
            config = run.config()
        except (LabError, OSError):  # a corrupt run is skipped here, shown by `lab runs`
            continue
        if config.level and config.level not in chosen and run.result_path.exists():
            chosen[config.level] = run
    return [chosen[k] for k in sorted(chosen)]


def comparison(runs_dir: Path, refs: list[str] | None = None,
               on_skip: OnSkip | None = None) -> list[dict[str, Any]]:
    """One row per run: level, model, augmentation, test accuracy and change against Level 1.

    A run with a corrupt record raises DataError, or with `on_skip` is left out and reported
    to it, so one damaged run does not hide the comparison of the others; when every named
    run is corrupt, the first one's error is raised all the same."""
    runs = [resolve_run(runs_dir, r) for r in refs] if refs else latest_finished_by_level(runs_dir)
    rows, skipped = [], []
    for run in runs:
        try:
            rows.append(_row(run))
        except DataError as exc:
            if on_skip is None:
                raise
            skipped.append((run.id, exc))
    if refs and skipped and not rows:
        raise skipped[0][1]
    for run_id, exc in skipped:
        on_skip(run_id, str(exc))  # type: ignore[misc] - set whenever something was skipped
    base = next((r["test_acc"] for r in rows if r["level"] == 1 and r["test_acc"] is not None),
                None)
    for row in rows:
        row["delta_vs_l1"] = (row["test_acc"] - base
                              if base is not None and row["test_acc"] is not None else None)
    return rows


def _row(run: RunDir) -> dict[str, Any]:
    config, result = run.config(), run.result() or {}
    level = LEVELS.get(config.level or 0)
    return {
        "run_id": run.id,
        "level": config.level,
        "model": model_name(config.model, config.weights, config.dropout),
        "dataset": result.get("dataset", config.dataset),
        "image_size": config.image_size,
        "epochs": config.epochs,
        "augmentation": result.get("augmentation", config.augmentation_summary()),
        "weight_decay": config.weight_decay,
        "test_acc": result.get("test_acc"),
        "seed_acc": level.seed_accuracy / 100 if level else None,
        "state": run.live_state(),
    }


def model_name(model: str, weights: str, dropout: float) -> str:
    if model == "cnn":
        name = "custom CNN"
    else:
        source = {"imagenet": "ImageNet", "none": "scratch"}.get(weights, "file")
        name = f"ResNet18 {source}"
    return name + (f", dropout {dropout:g}" if dropout else "")


# ---- the Markdown report -------------------------------------------------------------------

"""The study's comparison: which runs stand for each level and how they compare with Level 1.

Clients render these rows; they never recompute them, so the CLI table, the console's compare
screen and the Markdown report always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import LabError, describe_os_error
from lab.levels import LEVELS
from lab.runs import RunDir, list_runs, resolve_run
from lab.views.study import ALPHA, config_key, difference, summarize

OnSkip = Callable[[str, str], None]  # (run id, why): a run left out of the comparison


def latest_finished_by_level(runs_dir: Path) -> list[RunDir]:
    """The newest finished run of each level, in level order."""
    return [members[0] for members in level_groups(runs_dir)]


def level_groups(runs_dir: Path) -> list[list[RunDir]]:
    """The runs that stand for each level, in level order: its newest finished run, and when
    that run belongs to a study, with it every finished run of that study with the same
    configuration (its repeated seeds), newest first. A run without a study stands alone, so
    a runs directory of one run per level compares as it always has."""
    finished: list[tuple[RunDir, RunConfig]] = []
    for run in list_runs(runs_dir):  # newest first
        try:
            config = run.config()
        except (LabError, OSError):  # a corrupt run is skipped here, shown by `lab runs`
            continue
        if config.level and run.result_path.exists():
            finished.append((run, config))
    chosen: dict[int, tuple[RunDir, RunConfig]] = {}
    for run, config in finished:
        chosen.setdefault(config.level, (run, config))  # type: ignore[arg-type] - level set
    groups = []
    for level in sorted(chosen):
        run, config = chosen[level]
        members = [run]
        if config.study:
            key = config_key(config)
            members += [other for other, c in finished if other is not run
                        and c.study == config.study and config_key(c) == key]
        groups.append(members)
    return groups


def comparison(runs_dir: Path, refs: list[str] | None = None,
               on_skip: OnSkip | None = None) -> list[dict[str, Any]]:
    """One row per run: level, model, setup, test accuracy, change against Level 1, and the
    study's figure where the run repeats the study's setup (else None).

    Without `refs`, a level whose newest run belongs to a study with repeated seeds of its
    configuration is one row for that group (`level_groups`): `test_acc` is the group's mean
    and `group` holds n, the runs, their accuracies and mean ± std with the 95% interval
    (None for a row of one run). When any row is a group, `versus_l1` is every other row's
    Welch test against Level 1 (`lab.views.study.difference`); else None, as are old rows.

    A run whose records cannot be read (corrupt, a directory in place of a file, unreadable)
    raises, or with `on_skip` is left out and reported to it, so one damaged run does not hide
    the comparison of the others; when every named run is unreadable, the first one's error is
    raised all the same."""
    members = [[resolve_run(runs_dir, r)] for r in refs] if refs else level_groups(runs_dir)
    rows, skipped = [], []
    for runs in members:
        read = []
        for run in runs:
            try:
                read.append(_row(run))
            except (LabError, OSError) as exc:
                error = describe_os_error(exc) if isinstance(exc, OSError) else exc
                if on_skip is None:
                    raise error from None
                skipped.append((run.id, error))
        if read:
            rows.append(_grouped(read))
    if refs and skipped and not rows:
        raise skipped[0][1]
    for run_id, error in skipped:
        on_skip(run_id, str(error))  # type: ignore[misc] - set whenever something was skipped
    base = next((r for r in rows if r["level"] == 1 and r["test_acc"] is not None), None)
    grouped = any(r["group"] is not None for r in rows)
    for row in rows:
        row["delta_vs_l1"] = (row["test_acc"] - base["test_acc"]
                              if base is not None and row["test_acc"] is not None else None)
        row["versus_l1"] = None
        if grouped and base is not None and row is not base and row["test_acc"] is not None:
            row["versus_l1"] = difference(_values(row), _values(base)).to_dict()
    return rows


def _grouped(read: list[tuple[dict[str, Any], RunConfig]]) -> dict[str, Any]:
    """The row of a level's runs (newest first): the newest run's, and for several runs with
    a test accuracy, their mean as `test_acc` and the group's figures under `group`."""
    row, config = read[0]
    done = [(r, c) for r, c in read if r["test_acc"] is not None]
    row["group"] = None
    if len(done) < 2:
        return row
    values = [r["test_acc"] for r, _ in done]  # before the row's own becomes the mean
    summary = summarize(values)
    row["test_acc"] = summary.mean
    row["group"] = {"study": config.study, "n": summary.n, "runs": [r["run_id"] for r, _ in done],
                    "seeds": sorted(c.seed for _, c in done), "values": values,
                    "test_acc": summary.to_dict()}
    return row


def _values(row: dict[str, Any]) -> list[float]:
    return row["group"]["values"] if row["group"] else [row["test_acc"]]


def _row(run: RunDir) -> tuple[dict[str, Any], RunConfig]:
    config, result = run.config(), run.result() or {}
    dataset = result.get("dataset", config.dataset)
    return {
        "run_id": run.id,
        "level": config.level,
        "model": model_name(config.model, config.weights, config.dropout),
        "dataset": dataset,
        "image_size": config.image_size,
        "epochs": config.epochs,
        "augmentation": result.get("augmentation", config.augmentation_summary()),
        "weight_decay": config.weight_decay,
        "test_acc": result.get("test_acc"),
        "seed_acc": study_accuracy(config.level, dataset, config.image_size, config.epochs),
        "state": run.live_state(),
        "torch": result.get("torch"),
        "device_type": str(result["device"]).split(":")[0] if result.get("device") else None,
    }, config


# What makes two runs comparable: rows that differ in any of these are flagged as such.
SETUP_FIELDS = (("dataset", "data set"), ("image_size", "image size"), ("epochs", "epochs"))
# Where they ran: numbers from another torch build or device type may differ for that alone.
ENVIRONMENT_FIELDS = (("torch", "torch version"), ("device_type", "device type"))


def study_accuracy(level: int | None, dataset: str, image_size: int,
                   epochs: int) -> float | None:
    """The study's test accuracy for a run of `level`, only when the run repeats the study's
    setup (CIFAR-10 at the level's image size and epoch count): a figure for another data set
    or a shorter schedule is no reference for it."""
    preset = LEVELS.get(level or 0)
    if preset is None or (dataset, image_size, epochs) != (
            "cifar10", preset.config.image_size, preset.config.epochs):
        return None
    return preset.seed_accuracy / 100


def setup_differences(rows: list[dict[str, Any]],
                      fields: tuple[tuple[str, str], ...] = SETUP_FIELDS) -> list[str]:
    """The fields in which the compared runs differ, each with the values seen:
    `["data set (cifar10, digits)", "image size (32, 224)"]`; empty when all agree. A run
    that does not record a field (an older one) is not counted as differing."""
    differ = []
    for key, name in fields:
        values = sorted({r.get(key) for r in rows} - {None}, key=lambda v: (str(type(v)), v))
        if len(values) > 1:
            differ.append(f"{name} ({', '.join(str(v) for v in values)})")
    return differ


def comparison_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The lines under a comparison, the same in the CLI and the console: which setups differ,
    and what the study's column means (or why it is absent)."""
    preset = LEVELS[1].config
    study = f"CIFAR-10, {preset.image_size} px, {preset.epochs} epochs"
    notes = []
    differ = setup_differences(rows)
    if differ:
        notes.append("not like for like: the runs differ in " + "; ".join(differ))
    ran = setup_differences(rows, ENVIRONMENT_FIELDS)
    if ran:
        notes.append("ran differently: " + "; ".join(ran) + " (results may differ for that "
                     "alone; lab show RUN names each run's environment)")
    if any(r["seed_acc"] is not None for r in rows):
        notes.append(f"study: the seed's result ({study}), shown only for runs with that setup")
    elif rows:
        notes.append(f"no study figure: none of these runs repeats the study's setup ({study})")
    groups = [r for r in rows if r.get("group")]
    if groups:
        names = ", ".join(f"L{r['level']} ({r['group']['n']} runs of study "
                          f"{r['group']['study']})" for r in groups)
        notes.append(f"grouped: {names}, each its study's repeated seeds of the newest run's "
                     "configuration; test acc is their mean, ± their sample std; 95% CI: "
                     "Student's t; p: Welch's t-test against Level 1, within noise when "
                     f"p ≥ {ALPHA:g}, n too small with one run on a side")
    return notes


def epochs_text(epochs: int) -> str:
    return f"{epochs} epoch{'' if epochs == 1 else 's'}"


def model_name(model: str, weights: str, dropout: float) -> str:
    if model == "cnn":
        name = "custom CNN"
    else:
        source = {"imagenet": "ImageNet", "none": "scratch"}.get(weights, "file")
        name = f"ResNet18 {source}"
    return name + (f", dropout {dropout:g}" if dropout else "")


# ---- the Markdown report -------------------------------------------------------------------

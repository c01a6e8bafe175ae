"""The Markdown report that a person can open or attach.

`write_report` turns runs into `report.md` plus PNG figures (rendered by `lab.views.figures`,
imported only here so `lab compare` stays light); its comparison rows are `lab.views.compare`'s,
as in `lab compare` and the console.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError, NotFoundError
from lab.levels import LEVELS
from lab.runs import (
    RunDir,
    now_iso,
    resolve_run,
)
from lab.views.compare import (
    comparison,
    comparison_notes,
    latest_finished_by_level,
    model_name,
)
from lab.views.markdown import cell as _cell
from lab.views.markdown import gradcam_section
from lab.views.markdown import pct as _pct

MARKER = ".lab-report"  # marks a folder `lab report` wrote, so only such a folder is replaced


@dataclass
class _Run:
    run: RunDir
    config: RunConfig
    result: dict[str, Any]
    epochs: list[dict[str, Any]]
    label: str = ""


def write_report(runs_dir: Path, refs: list[str] | None = None,
                 out_dir: Path | None = None, study: str | None = None) -> dict[str, Any]:
    """Write `report.md` and its figures into `out_dir` (default `<runs_dir>/report`).

    Everything is built in a temp folder and only then put in place, so a failure or a signal
    leaves any older report untouched and never half a folder (nor the temp folder). An older
    report (a folder holding the marker) is replaced whole by a rename; an empty folder that lab
    did not make is filled in place, so it keeps its own mode and owner; any other folder is
    refused. `study` names a study to report instead of single runs
    (`lab.views.study_report`). Returns the paths.
    """
    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    if study is not None:
        if refs:
            raise ConfigError("name runs or --study, not both")
        from lab.views.study_report import build_study, load_study

        loaded = load_study(runs_dir, study)
        run_ids = loaded.run_ids

        def body(root: Path, save: Any) -> list[str]:
            return build_study(runs_dir, loaded, root, save)
    else:
        runs = _load_runs(runs_dir, refs)
        run_ids = [r.run.id for r in runs]

        def body(root: Path, save: Any) -> list[str]:
            return _build(runs_dir, runs, root, save)
    in_place = _check_replaceable(out_dir)
    if in_place:  # built inside the folder: same file system, and only its permission needed
        tmp = out_dir / f"{MARKER}.tmp-{secrets.token_hex(4)}"
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()  # not mkdtemp: its 0700 would make the report private to this user
        figures = _render(tmp, body)
        marker = {"created": now_iso(), "runs": run_ids, "study": study}
        (tmp / MARKER).write_text(json.dumps(marker) + "\n")
        if in_place:
            _move_into(tmp, out_dir)
        else:
            from lab.data.store import swap_into_place  # here: lab.data costs a second to import

            if out_dir.exists():  # the new folder takes on the old one's permissions
                os.chmod(tmp, stat.S_IMODE(out_dir.stat().st_mode))
            swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"report": str(out_dir / "report.md"), "dir": str(out_dir),
            "runs": run_ids, "study": study, "figures": [str(out_dir / f) for f in figures]}


def _load_runs(runs_dir: Path, refs: list[str] | None) -> list[_Run]:
    """Read every record first: a missing or corrupt one (checked against its schema by the
    readers of `lab.runs`) fails the report before any writing."""
    if refs:
        picked = list({r.id: r for r in (resolve_run(runs_dir, ref) for ref in refs)}.values())
    else:
        picked = latest_finished_by_level(runs_dir)
    if not picked:
        raise NotFoundError(f"no finished runs in {runs_dir}",
                            hint="make some with `lab demo` or `lab run --level N`")
    loaded = []
    for run in picked:
        run.check_records()
        result = run.result()
        if result is None:
            raise NotFoundError(f"run {run.id} has no result yet (state: {run.live_state()})",
                                hint="report it once it has finished")
        epochs = [e for e in run.events() if e.get("event") == "epoch"]
        loaded.append(_Run(run, run.config(), result, epochs))
    labels = [r.config.label for r in loaded]
    for r in loaded:
        r.label = r.config.label if labels.count(r.config.label) == 1 else \
            f"{r.config.label} {r.run.id[-4:]}"
    return loaded


def _check_replaceable(out_dir: Path) -> bool:
    """Whether the report goes into `out_dir` in place (an empty folder lab did not make)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    if not out_dir.is_dir() or (out_dir / MARKER).exists():
        return False
    if any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not a lab report; it is left alone",
                          hint="choose another -o DIR")
    return True


def _move_into(tmp: Path, out_dir: Path) -> None:
    """Move the finished report out of `tmp` (inside `out_dir`) into `out_dir` itself.

    The marker goes last, so a folder holding it always holds a whole report; on any failure
    (or a signal) what was moved is taken out again and the folder is as empty as it was.
    """
    if sorted(out_dir.iterdir()) != [tmp]:
        raise ConfigError(f"{out_dir} was written to while the report was being made; "
                          "it is left alone", hint="choose another -o DIR")
    names = sorted(os.listdir(tmp), key=lambda name: (name == MARKER, name))
    try:
        for name in names:
            os.rename(tmp / name, out_dir / name)
        tmp.rmdir()
    except BaseException:
        for name in names:
            path = out_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _render(root: Path, body: Any) -> list[str]:
    """Write `root/report.md` from `body(root, save)` (its Markdown lines; `save` puts a figure
    in `root/figures`); returns the figure paths (relative)."""
    from lab.views import figures as fg

    (root / "figures").mkdir()

    def save(fig: Any, name: str) -> str:
        fg.save(fig, root / "figures" / name)
        return f"figures/{name}"

    md = body(root, save)
    (root / "report.md").write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return sorted(f"figures/{p.name}" for p in (root / "figures").iterdir())


def _build(runs_dir: Path, runs: list[_Run], root: Path, save: Any) -> list[str]:
    """The Markdown of single runs (figures through `save`)."""
    from lab.views import figures as fg

    rows = comparison(runs_dir, [r.run.id for r in runs])
    by_id = {r.run.id: r for r in runs}
    md = [f"# {_title(runs)}", "",
          f"Generated {now_iso()} by `lab report` from {len(runs)} run(s) in `{runs_dir}`.", "",
          "## The study's levels", "", *_levels_table(), "",
          "## Comparison", "", *_comparison_table(rows), ""]
    bars = fg.accuracy_bar_figure(
        [by_id[r["run_id"]].label for r in rows], [r["test_acc"] for r in rows],
        [r["seed_acc"] if r["dataset"] == "cifar10" else None for r in rows],
        reference_label="study (CIFAR-10, 224 px)")
    md += [f"![Test accuracy of each run]({save(bars, 'test-accuracy.png')})", "",
           "## Training curves", ""]
    if any(r.epochs for r in runs):
        curves = fg.val_curves_figure({r.label: r.epochs for r in runs})
        md += [f"![Validation accuracy per epoch, all runs]({save(curves, 'val-accuracy.png')})",
               ""]
    else:
        md += ["No epoch was recorded in these runs' `metrics.jsonl`.", ""]
    for r in runs:
        md += _run_section(r, save, root)
    return md


def _title(runs: list[_Run]) -> str:
    datasets = sorted({str(r.result.get("dataset", r.config.dataset)) for r in runs})
    return f"Image-classification report: {', '.join(datasets)}"


def _levels_table() -> list[str]:
    levels = list(LEVELS.values())
    rows = [("model", lambda c: model_name(c.model, c.weights, 0.0)),
            ("augmentation", lambda c: c.augmentation_summary()),
            ("dropout", lambda c: f"{c.dropout:g}"),
            ("weight decay", lambda c: f"{c.weight_decay:g}"),
            ("learning rate", lambda c: f"{c.lr:g} ({c.optimizer})"),
            ("batch size", lambda c: str(c.batch_size)),
            ("epochs", lambda c: str(c.epochs)),
            ("image size", lambda c: f"{c.image_size}×{c.image_size}")]
    md = ["| | " + " | ".join(f"Level {lv.number} {lv.title}" for lv in levels) + " |",
          "|---|" + "---|" * len(levels)]
    md += [f"| {name} | " + " | ".join(_cell(f(lv.config)) for lv in levels) + " |"
           for name, f in rows]
    md.append("| study's test accuracy | "
              + " | ".join(f"{lv.seed_accuracy:.2f}%" + ("*" if lv.seed_note else "")
                           for lv in levels) + " |")
    notes = [f"\\* Level {lv.number}: {lv.seed_note}." for lv in levels if lv.seed_note]
    return md + ([""] + notes if notes else [])


def _comparison_table(rows: list[dict[str, Any]]) -> list[str]:
    md = ["| Level | Model | Augmentation | Weight decay | Data | Test accuracy | Δ vs L1 "
          "| Study | Run |", "|---:|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        delta = r["delta_vs_l1"]
        md.append(" | ".join([
            f"| {r['level'] or '–'}", _cell(r["model"]), _cell(r["augmentation"]),
            f"{r['weight_decay']:g}", _cell(f"{r['dataset']} {r['image_size']}px "
                                            f"{r['epochs']}ep"),
            f"**{_pct(r['test_acc'])}**", "–" if delta is None else f"{100 * delta:+.2f}",
            _pct(r["seed_acc"]), f"`{r['run_id']}` |"]))
    base = next((r["run_id"] for r in rows if r["level"] == 1 and r["test_acc"] is not None), None)
    note = (f"Δ vs L1: percentage points against the Level 1 run `{base}`." if base else
            "Δ vs L1: no finished Level 1 run in this report, so no change is shown.")
    notes = " ".join(f"{n[0].upper()}{n[1:]}." for n in comparison_notes(rows))
    return md + ["", f"{note} {notes}".rstrip()]


def _run_section(r: _Run, save: Any, root: Path) -> list[str]:
    from lab.views import figures as fg
    from lab.views.states import WEAK_GAP, weakest_classes

    c, res, rid = r.config, r.result, r.run.id
    heading = f"Level {c.level} ({LEVELS[c.level].title})" if c.level in LEVELS else "Custom run"
    md = [f"## {heading}: `{rid}`", "", *_essentials(r), ""]
    if r.epochs:
        fig = fg.run_curves_figure(r.epochs, title=f"{r.label}: {rid}")
        md += [f"![Loss and accuracy per epoch]({save(fig, f'{rid}-curves.png')})", ""]
    weakest = weakest_classes(res["per_class"])
    weak = set(weakest)
    md += ["### Per-class report", "",
           "| Class | Precision | Recall | F1 | Support | |", "|---|---:|---:|---:|---:|---|"]
    for row in res["per_class"]:
        md.append(f"| {_cell(row['class'])} | {row['precision']:.3f} | {row['recall']:.3f} | "
                  f"{row['f1']:.3f} | {row['support']} | "
                  f"{'**weak**' if row['class'] in weak else ''} |")
    macro = res.get("macro")
    if macro:
        total = sum(int(row["support"]) for row in res["per_class"])
        md.append(f"| *macro average* | {macro['precision']:.3f} | {macro['recall']:.3f} | "
                  f"{macro['f1']:.3f} | {total} | |")
    weak_line = (f"Weak classes (F1 clearly below the median class): "
                 f"{', '.join(_cell(c) for c in weakest)}." if weakest else
                 "No class is clearly below the rest (F1 under the median class by more than "
                 f"{WEAK_GAP:.2f} or twice the median deviation).")
    md += ["", weak_line, "", "### Confusion matrix", ""]
    fig = fg.confusion_figure(res["confusion"], res["classes"], title=f"Confusion: {r.label}")
    md += [f"![Confusion matrix (rows true, columns predicted)]"
           f"({save(fig, f'{rid}-confusion.png')})", "", "### Most-confused pairs", ""]
    pairs = res["most_confused"][:10]
    if pairs:
        md += ["| True | Predicted as | Count | Share of true class |", "|---|---|---:|---:|"]
        md += [f"| {_cell(p['true'])} | {_cell(p['predicted'])} | {p['count']} | "
               f"{_pct(p['share'], 1)} |" for p in pairs]
    else:
        md.append("No test image was misclassified.")
    return md + ["", "### Grad-CAM", "", *gradcam_section(r.run, root), ""]


def _essentials(r: _Run) -> list[str]:
    c, res = r.config, r.result
    timings, speed = res.get("timings") or {}, res.get("throughput") or {}
    setup = (f"{model_name(c.model, c.weights, c.dropout)}; {res.get('dataset', c.dataset)} at "
             f"{c.image_size}×{c.image_size}; {c.epochs} epoch(s), batch {c.batch_size}, "
             f"{c.optimizer} lr {c.lr:g}, weight decay {c.weight_decay:g}, seed {c.seed}")
    outcome = f"test accuracy **{_pct(res['test_acc'])}**"
    if res.get("test_loss") is not None:
        outcome += f" (loss {res['test_loss']:.4f})"
    if res.get("best_val_acc") is not None:
        outcome += f", best validation {_pct(res['best_val_acc'])}"
    if timings.get("total_seconds") is not None:
        outcome += f"; {timings['total_seconds']:.0f} s on {res.get('device', c.device)}"
    if speed.get("train_images_per_s"):
        outcome += f", {speed['train_images_per_s']:,.0f} training images/s"
    md = [f"- **Setup:** {_cell(setup)}",
          f"- **Augmentation:** {_cell(res.get('augmentation', c.augmentation_summary()))}",
          f"- **Result:** {outcome}"]
    md += [f"- **Note:** {_cell(note)}" for note in res.get("notes") or []]
    return md

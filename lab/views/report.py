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
from lab.errors import ConfigError, DataError, NotFoundError
from lab.explain.index import read_galleries, read_gallery
from lab.levels import LEVELS
from lab.runs import (
    RunDir,
    now_iso,
    resolve_run,
)
from lab.views.compare import comparison, latest_finished_by_level, model_name

MARKER = ".lab-report"  # marks a folder `lab report` wrote, so only such a folder is replaced


@dataclass
class _Run:
    run: RunDir
    config: RunConfig
    result: dict[str, Any]
    epochs: list[dict[str, Any]]
    label: str = ""


def write_report(runs_dir: Path, refs: list[str] | None = None,
                 out_dir: Path | None = None) -> dict[str, Any]:
    """Write `report.md` and its figures into `out_dir` (default `<runs_dir>/report`).

    Everything is built in a temp folder and only then put in place, so a failure or a signal
    leaves any older report untouched and never half a folder (nor the temp folder). An older
    report (a folder holding the marker) is replaced whole by a rename; an empty folder that lab
    did not make is filled in place, so it keeps its own mode and owner; any other folder is
    refused. Returns the paths.
    """
    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    runs = _load_runs(runs_dir, refs)
    in_place = _check_replaceable(out_dir)
    if in_place:  # built inside the folder: same file system, and only its permission needed
        tmp = out_dir / f"{MARKER}.tmp-{secrets.token_hex(4)}"
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()  # not mkdtemp: its 0700 would make the report private to this user
        figures = _build(runs_dir, runs, tmp)
        marker = {"created": now_iso(), "runs": [r.run.id for r in runs]}
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
            "runs": [r.run.id for r in runs], "figures": [str(out_dir / f) for f in figures]}


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


def _build(runs_dir: Path, runs: list[_Run], root: Path) -> list[str]:
    """Render the figures and the Markdown into `root`; returns the figure paths (relative)."""
    from lab.views import figures as fg

    (root / "figures").mkdir()

    def save(fig: Any, name: str) -> str:
        fg.save(fig, root / "figures" / name)
        return f"figures/{name}"

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
    (root / "report.md").write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return sorted(f"figures/{p.name}" for p in (root / "figures").iterdir())


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
    return md + ["", note + " Study: the seed's CIFAR-10 result at 224×224."]


def _run_section(r: _Run, save: Any, root: Path) -> list[str]:
    from lab.views import figures as fg
    from lab.views.states import weakest_classes

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
    md += ["", f"Weakest classes (lowest F1): {', '.join(map(str, weakest))}.", "",
           "### Confusion matrix", ""]
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
    return md + ["", "### Grad-CAM", "", *_gradcam_section(r, root), ""]


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


def _gradcam_section(r: _Run, root: Path) -> list[str]:
    """The run's gallery grid, copied beside the report, with its captions as a table."""
    base = r.run.path / "gradcam"
    try:
        galleries = read_galleries(base)
    except DataError as exc:
        return [f"Grad-CAM index unreadable: {_cell(str(exc))}."]
    if not galleries:
        try:
            failed = r.run.status().get("gradcam_error")
        except DataError:
            failed = None
        why = f": the end-of-run gallery failed ({_cell(failed)})" if failed else ""
        return [f"No Grad-CAM gallery for this run{why} (make one with `lab gradcam RUN`)."]
    gallery = next((g for g in galleries if g["name"] == "gradcam"), galleries[0])
    name = gallery["name"]
    if not gallery.get("grid"):
        return [f"Grad-CAM gallery `{_cell(name)}` is empty: no test image matched it."]
    grid = _inside(base, gallery["grid"])  # a string: the index's schema says so
    if grid is None or not _is_png(grid):
        return [f"Grad-CAM gallery `{_cell(name)}` has no readable grid image."]
    rel = f"figures/{r.run.id}-gradcam-{name}.png"
    shutil.copyfile(grid, root / rel)
    try:
        detail = read_gallery(base, name) or {}
    except DataError:
        detail = {}
    items = detail.get("items") or []
    method = gallery.get("method") or detail.get("method") or "?"
    layer = gallery.get("layer") or detail.get("layer") or "?"
    wrong = sum(1 for it in items if it.get("correct") is False)
    md = [f"Gallery `{_cell(name)}`: {_cell(method)} on layer `{_cell(layer)}`, "
          f"{len(items) or gallery.get('count', 0)}"
          f" image(s)" + (f", {wrong} misclassified" if items else "") + ".", "",
          f"![Grad-CAM gallery {name} of {r.run.id}]({rel})", ""]
    if items:
        md += ["| # | Caption | | Test image |", "|---:|---|---|---:|"]
        for i, it in enumerate(items, 1):
            text = it.get("caption") or _caption(it)
            mark = "**wrong**" if it.get("correct") is False else "right"
            md.append(f"| {i} | {_cell(text)} | {mark} | {it.get('test_index', '–')} |")
    return md


def _caption(item: dict[str, Any]) -> str:
    conf = item.get("confidence")
    return (f"true {item.get('true', '?')} · pred {item.get('predicted', '?')}"
            + (f" · {_pct(conf, 0)}" if isinstance(conf, (int, float)) else ""))


def _inside(base: Path, rel: str) -> Path | None:
    """`base/rel` when it stays inside `base` (an index must not point anywhere else)."""
    if not rel:
        return None
    path = (base / rel).resolve()
    return path if path.is_relative_to(base.resolve()) and path.is_file() else None


def _is_png(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (class names come from folder names)."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"

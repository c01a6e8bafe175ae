"""Rich renderables for the CLI: tables built from rows the engine computed, nothing more.

Every string that comes from a record goes in as `Text`, never as a markup string: a class name
or a path like `[/]` would otherwise be read as Rich markup and stop the table with an error."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group as RichGroup
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.cli.common import pct
from lab.runs import State
from lab.views.sizes import bytes_text
from lab.views.states import look


def comparison_table(rows: list[dict[str, Any]], title: str = "Comparison",
                     width: int = 80) -> Table:
    """The study's comparison. A setup shared by all rows goes into the title, else each row
    shows its own and a note says which fields differ; the study's column appears only when a
    run repeats the study's setup; the run id column when the terminal is wide enough for it
    (`--json` always has them all)."""
    from lab.views.compare import comparison_notes, epochs_text
    from lab.views.study_compare import VERDICT_STYLE, group_cells

    setups = {f"{r['dataset']}, {r['image_size']}px, {epochs_text(r['epochs'])}" for r in rows}
    shared = len(setups) == 1
    if shared:
        title = f"{title} ({escape(setups.pop())})"
    study = any(r["seed_acc"] is not None for r in rows)
    wide = width >= 110
    grouped = any(r.get("group") for r in rows)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption_justify="left", padding=(0, 1, 0, 0) if grouped else (0, 1))
    table.add_column("L", justify="right", no_wrap=True)
    table.add_column("Model", ratio=3)
    table.add_column("Augmentation", ratio=3)
    table.add_column("WD", justify="right", no_wrap=True)
    if not shared:
        table.add_column("Setup", ratio=2)
    table.add_column("Test acc", justify="right", no_wrap=True)
    table.add_column("Δ vs L1", justify="right", no_wrap=True)
    if grouped:  # the interval only where there is room: --json always has it
        for name in ("n", "±", "95% CI", "p") if wide else ("n", "±", "p"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("", min_width=6)  # the verdict: two lines when narrow
    if study:
        table.add_column("Study", justify="right", no_wrap=True)
    if wide:
        table.add_column("Run", no_wrap=True)
    for r in rows:
        delta = r.get("delta_vs_l1")
        delta_text = Text("–") if delta is None else Text(
            f"{100 * delta:+.2f}", style="green" if delta > 0 else "red" if delta < 0 else "")
        cells: list[Any] = [str(r["level"] or "–"), Text(str(r["model"])),
                            Text(str(r["augmentation"])), _fmt(r["weight_decay"])]
        if not shared:
            cells.append(Text(f"{r['dataset']} {r['image_size']}px {r['epochs']}ep"))
        cells += [Text(pct(r["test_acc"]), style="bold"), delta_text]
        if grouped:
            group = group_cells(r)
            cells += [group["n"], group["std"], *([group["ci"]] if wide else []), group["p"],
                      Text(group["verdict"], style=VERDICT_STYLE.get(group["verdict"], ""))]
        if study:
            cells.append(pct(r["seed_acc"]))
        if wide:
            cells.append(Text(str(r["run_id"])))
        table.add_row(*cells)
    notes = ["Δ in percentage points", *comparison_notes(rows)]
    if not rows:
        notes.insert(0, "no finished runs yet: try `lab demo` or `lab run --level 1`")
    table.caption = Text("\n".join(notes))  # record strings (data set names): never markup
    return table


def study_table(doc: dict[str, Any]) -> RichGroup:
    """`lab compare --study`: a row per configuration, numbered for `--baseline N`, and the
    engine's notes under it. Every figure comes from `doc` (lab.views.study_compare). The notes
    are no caption: Rich wraps a caption to the table's width, which here can be one cell more
    than the terminal's, and the cropped cell took a word with it."""
    from lab.views.study_compare import (
        VERDICT_STYLE,
        interval_text,
        mean_std_text,
        p_text,
        verdict_text,
    )

    setup = f" ({doc['setup']})" if doc.get("setup") else ""
    table = Table(title=escape(f"Study {doc['study']}{setup}"), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, caption_justify="left",
                  padding=(0, 1, 0, 0))  # columns two cells apart: 80 columns hold it all
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Configuration", ratio=1, min_width=13)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("Test acc ± std", justify="right", no_wrap=True)
    table.add_column("95% CI", justify="right", no_wrap=True)
    table.add_column(f"Δ vs #{doc['baseline'] + 1}", justify="right", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("", min_width=6)  # the verdict: two lines when narrow
    for i, row in enumerate(doc["rows"], start=1):
        versus, acc = row["versus_baseline"], row["test_acc"]
        verdict = verdict_text(versus)
        table.add_row(str(i), Text(row["name"], style="bold" if row["baseline"] else ""),
                      str(acc["n"]), Text(mean_std_text(acc), style="bold"),
                      interval_text(acc), _delta_cell(versus), p_text(versus),
                      Text(verdict, style=VERDICT_STYLE.get(verdict, "")))
    return RichGroup(table, Text("\n".join(doc["notes"])))  # names from records: no markup


def _delta_cell(versus: dict[str, Any] | None) -> Text:
    from lab.views.study_compare import delta_text

    if versus is None:
        return Text(delta_text(versus), style="dim")
    delta = versus["delta"]
    return Text(delta_text(versus), style="green" if delta > 0 else "red" if delta < 0 else "")


def study_per_class_table(doc: dict[str, Any]) -> Table:
    """Mean F1 ± std per class (rows) and configuration (columns, numbered as above); the
    best mean of each class in bold."""
    table = Table(title="Per-class F1, mean ± std over the runs",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("class")
    for i, row in enumerate(doc["rows"], start=1):
        table.add_column(Text(f"#{i} {row['name']}"), justify="right")
    for entry in doc["per_class"]:
        means = [c["mean"] for c in entry["f1"] if c is not None]
        best = max(means) if means else None
        cells = []
        for cell in entry["f1"]:
            if cell is None:
                cells.append(Text("–", style="dim"))
                continue
            std = "" if cell["std"] is None else f" ± {cell['std']:.3f}"
            cells.append(Text(f"{cell['mean']:.3f}{std}",
                              style="bold" if cell["mean"] == best and len(means) > 1 else ""))
        table.add_row(Text(entry["class"]), *cells)
    return table


def levels_table(levels: list[Any], fields: list[str]) -> Table:
    table = Table(title="The study's three levels (defaults of `lab run --level N`)",
                  title_justify="left")
    table.add_column("field")
    for level in levels:
        table.add_column(f"Level {level.number}")
    table.add_row("", *[Text(level.title, style="bold") for level in levels])
    dicts = [level.config.to_dict() for level in levels]
    for name in fields:
        values = [_fmt(d[name]) for d in dicts]
        style = "yellow" if len(set(values)) > 1 else ""
        table.add_row(name, *[Text(v, style=style) for v in values])
    table.add_row(Text("study's test accuracy", style="bold"),
                  *[Text(f"{level.seed_accuracy:.2f}%" + ("*" if level.seed_note else ""),
                         style="bold") for level in levels])
    notes = [f"* {level.seed_note}" for level in levels if level.seed_note]
    table.caption = "  ".join(notes) + "  (yellow: fields that differ)"
    return table


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """Newest first; the id already carries the creation time."""
    # One space between columns, short headers and no level column (the id's label has it):
    # at 80 columns (a pipe) "resnet18 cifar10 interrupted" shows whole beside a full run id.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=0, show_edge=False)
    table.add_column("Run", no_wrap=True)
    table.add_column("Model")
    table.add_column("Data")
    table.add_column("State")
    for name in ("Epoch", "Val", "Test", "Disk"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        state = r["state"]
        note = f" ({r['error']})" if r.get("error") and state in (State.FAILED, "corrupt") else ""
        table.add_row(Text(r["run_id"]), Text(r.get("model") or "?"),
                      Text(r.get("dataset") or "?"), Text(state + note, style=look(state).style),
                      f"{r.get('epoch', 0)}/{r.get('epochs') or '?'}", pct(r.get("val_acc")),
                      Text(pct(r.get("test_acc")), style="bold"),
                      bytes_text(r.get("disk_bytes")) + ("*" if r.get("pruned") else ""))
    if not rows:
        table.caption = "no runs yet: try `lab demo`"
    elif any(r.get("pruned") for r in rows):
        table.caption = "* pruned: weights kept, resume checkpoints removed"
    return table


def outcome_lines(result: dict[str, Any]) -> list[str]:
    """How training ended and which weights were tested, when it is not the plain case (all
    epochs, the last weights): an early stop, a best epoch tested, a test_on not honoured."""
    lines = []
    if result.get("stopped"):
        lines.append(f"stopped early after epoch {result.get('epochs_trained', '?')} of "
                     f"{result.get('epochs', '?')}: {result['stopped']}")
    tested = result.get("tested") or {}
    if tested.get("weights") == "best" or tested.get("asked"):
        asked = f"; {tested['asked']} was asked, but {tested.get('why')}" \
            if tested.get("asked") else ""
        lines.append(f"tested the {tested['weights']} weights (epoch {tested['epoch']}){asked}")
    return lines


def per_class_table(per_class: list[dict[str, Any]], weakest: list[str],
                    title: str = "Per-class report (test)") -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("class", "precision", "recall", "f1", "support"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for row in per_class:
        weak = row["class"] in weakest
        style = "bold red" if weak else ""
        table.add_row(Text(row["class"] + (" ◀ weak" if weak else ""), style=style),
                      f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      str(row["support"]), style=style)
    return table


def confusion_table(confusion: list[list[int]], classes: list[str]) -> Table:
    """Counts with the diagonal in green and errors shaded by their share of the row."""
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left",
                  padding=(0, 1), show_lines=False)
    table.add_column("")
    short = [c[:5] for c in classes]
    for name in short:
        table.add_column(Text(name), justify="right")
    for i, row in enumerate(confusion):
        total = sum(row) or 1
        cells = []
        for j, value in enumerate(row):
            if i == j:
                cells.append(Text(str(value), style="bold green"))
            elif value == 0:
                cells.append(Text("·", style="dim"))
            else:
                share = value / total
                cells.append(Text(str(value), style="bold red" if share >= 0.1 else
                                  "red" if share >= 0.03 else "yellow"))
        table.add_row(Text(short[i]), *cells)
    return table


def confused_pairs_table(pairs: list[dict[str, Any]], top: int = 5) -> Table:
    table = Table(title="Most-confused pairs", title_justify="left")
    for name in ("true", "predicted as", "count", "share of class"):
        table.add_column(name, justify="right" if name in ("count", "share of class") else "left")
    for p in pairs[:top]:
        table.add_row(Text(p["true"]), Text(p["predicted"]), str(p["count"]),
                      pct(p["share"], 1))
    return table


def config_table(config: dict[str, Any], status: dict[str, Any], columns: int = 3) -> Table:
    """The knobs that matter at a glance, `columns` key/value pairs per row."""
    table = Table.grid(padding=(0, 1))
    for _ in range(columns):
        table.add_column(style="bold")
        table.add_column(min_width=10)
    state = status.get("state", "?")
    items: list[tuple[str, Any]] = [
        (key, Text(_fmt(config.get(key)))) for key in (
            "level", "model", "weights", "dataset", "image_size", "augment", "dropout",
            "optimizer", "lr", "weight_decay", "batch_size", "epochs", "seed", "device",
            "precision")]
    items.append(("state", Text(state, style=look(state).style)))
    for i in range(0, len(items), columns):
        row: list[Any] = []
        for key, value in items[i:i + columns]:
            row += [key, value]
        table.add_row(*row)
    if status.get("error"):
        table.add_row("error", Text(str(status["error"]), style="red"))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

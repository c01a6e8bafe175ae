"""Rich renderables for the CLI: tables built from rows the engine computed, nothing more.

Every string that comes from a record goes in as `Text`, never as a markup string: a class name
or a path like `[/]` would otherwise be read as Rich markup and stop the table with an error."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.cli.common import pct
from lab.runs import State
from lab.views.states import look


def comparison_table(rows: list[dict[str, Any]], title: str = "Comparison",
                     width: int = 80) -> Table:
    """The study's comparison. A setup shared by all rows goes into the title; the run id
    column appears when the terminal is wide enough for it (`--json` always has it)."""
    setups = {f"{r['dataset']}, {r['image_size']}px, {r['epochs']} epochs" for r in rows}
    shared = len(setups) == 1
    if shared:
        title = f"{title} ({escape(setups.pop())})"
    wide = width >= 110
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("L", justify="right", no_wrap=True)
    table.add_column("Model", ratio=3)
    table.add_column("Augmentation", ratio=3)
    table.add_column("WD", justify="right", no_wrap=True)
    if not shared:
        table.add_column("Setup", ratio=2)
    table.add_column("Test acc", justify="right", no_wrap=True)
    table.add_column("Δ vs L1", justify="right", no_wrap=True)
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
        cells += [Text(pct(r["test_acc"]), style="bold"), delta_text, pct(r["seed_acc"])]
        if wide:
            cells.append(Text(str(r["run_id"])))
        table.add_row(*cells)
    notes = ["Δ in percentage points", "Study: the seed's CIFAR-10 result"]
    if not rows:
        notes.insert(0, "no finished runs yet: try `lab demo` or `lab run --level 1`")
    table.caption = "; ".join(notes)
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
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("Run", no_wrap=True)
    table.add_column("L", justify="right", no_wrap=True)
    for name in ("Model", "Data", "State"):
        table.add_column(name)
    for name in ("Epoch", "Val acc", "Test acc"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        state = r["state"]
        note = f" ({r['error']})" if r.get("error") and state in (State.FAILED, "corrupt") else ""
        table.add_row(Text(r["run_id"]), str(r.get("level") or "–"), Text(r.get("model") or "?"),
                      Text(r.get("dataset") or "?"), Text(state + note, style=look(state).style),
                      f"{r.get('epoch', 0)}/{r.get('epochs') or '?'}", pct(r.get("val_acc")),
                      Text(pct(r.get("test_acc")), style="bold"))
    if not rows:
        table.caption = "no runs yet: try `lab demo`"
    return table


def per_class_table(per_class: list[dict[str, Any]], weakest: list[str]) -> Table:
    table = Table(title="Per-class report (test)", title_justify="left")
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

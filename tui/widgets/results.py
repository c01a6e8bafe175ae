"""The finished run's results: per-class scores and the confusion matrix as a coloured grid."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.reactive import reactive
from textual.widgets import Static

from tui.detail import RunDetail

GREEN, RED, NEUTRAL = (89, 196, 90), (225, 87, 89), (70, 70, 70)


def no_result(detail: RunDetail | None) -> Text | None:
    """Why there is nothing to show yet, or None when there is a result."""
    if detail is None:
        return Text("select a run", style="dim")
    broken = [e for e in detail.errors if e.startswith("result.json")]
    if broken:
        return Text(f"! {broken[0]}", style="bold red")
    if not detail.result:
        return Text(f"{detail.state or 'no run'}: results appear when the run has finished",
                    style="dim")
    return None


class ResultView(ScrollableContainer):
    """A scrolling view of one renderable built from the selected run's detail."""

    DEFAULT_CSS = """
    ResultView { height: 1fr; }
    ResultView > Static { width: auto; height: auto; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)

    def compose(self) -> ComposeResult:
        yield Static()

    def watch_detail(self) -> None:
        empty = no_result(self.detail)
        try:
            body = empty if empty is not None else self.build(self.detail)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a foreign result.json
            body = Text(f"! result.json is malformed ({type(exc).__name__}: {exc})",
                        style="bold red")
        self.query_one(Static).update(body)

    def build(self, detail: RunDetail) -> Any:
        raise NotImplementedError


class PerClassView(ResultView):
    """Precision, recall, F1 and support per class; the weakest classes are marked."""

    def build(self, detail: RunDetail) -> Any:
        result = detail.result or {}
        weak = set(detail.weakest)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("class")
        for name in ("prec", "recall", "F1", "n"):
            table.add_column(name, justify="right")
        for row in result["per_class"]:
            style = "bold red" if row["class"] in weak else ""
            table.add_row(Text(str(row["class"]) + (" ◀" if row["class"] in weak else "")),
                          f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                          f"{row['f1']:.3f}", str(row["support"]), style=style)
        macro = result.get("macro")
        if macro:
            total = sum(int(r["support"]) for r in result["per_class"])
            table.add_row("macro", f"{macro['precision']:.3f}", f"{macro['recall']:.3f}",
                          f"{macro['f1']:.3f}", str(total), style="italic")
        head = Text.assemble(("test acc ", "dim"), (_pct(result.get("test_acc")), "bold"),
                             (" · weakest F1 ◀ ", "dim"), ", ".join(detail.weakest) or "none")
        return Group(head, table)


class ConfusionView(ResultView):
    """Rows are true classes, columns predictions; colour is the share of the true class."""

    def build(self, detail: RunDetail) -> Any:
        result = detail.result or {}
        matrix, classes = result["confusion"], [str(c) for c in result["classes"]]
        return Group(confusion_grid(matrix, classes),
                     Text(""), confused_pairs(result.get("most_confused") or []))


def confusion_grid(matrix: list[list[int]], classes: list[str]) -> Text:
    short = [c[:4] for c in classes]
    label_w = max(len(s) for s in short) + 1
    widest = max(max(len(str(v)) for row in matrix for v in row), *map(len, short))
    cell_w = max(3, widest + 1)
    text = Text("true ↓ predicted →\n", style="dim")
    text.append(" " * label_w + "".join(s.rjust(cell_w) for s in short) + "\n", style="bold")
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        text.append(short[i].ljust(label_w), style="bold")
        for j, value in enumerate(row):
            share = value / total
            if value == 0:
                text.append("·".rjust(cell_w), style="dim")
                continue
            tint = _blend(NEUTRAL, GREEN if i == j else RED,
                          0.35 + 0.65 * min(1.0, share if i == j else share * 4))
            text.append(str(value).rjust(cell_w), style=f"bold #ffffff on {tint}")
        text.append("\n")
    text.append("green: right · red: confused; brighter = larger share of the true class",
                style="dim")
    return text


def confused_pairs(pairs: list[dict[str, Any]], top: int = 5) -> Table:
    table = Table(title="most-confused pairs", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1))
    for name in ("true", "→ predicted", "n", "share"):
        table.add_column(name, justify="right" if name in ("n", "share") else "left")
    for p in pairs[:top]:
        table.add_row(Text(str(p["true"])), Text(str(p["predicted"])), str(p["count"]),
                      f"{100 * p['share']:.1f}%")
    if not pairs:
        table.caption = "no test image was misclassified"
    return table


def _blend(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.2f}%"

"""The compare screen: the study's comparison table, the change against Level 1, a bar chart of
test accuracy and the validation curves overlaid, for the marked runs or the latest finished
run of each level. The rows come from `lab.views.compare.comparison`, as in `lab compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from lab.views.charts import bar_chart
from tui.messages import ComparisonLoaded
from tui.model import read_events
from tui.widgets.curves import OverlayView, chart_text
from tui.widgets.keybar import KeyBar


def run_label(row: dict[str, Any]) -> str:
    """The same name (hence colour) a run has in the list and the overlay."""
    level, run_id = row.get("level"), str(row["run_id"])
    return f"L{level} {run_id[-4:]}" if level else f"run {run_id[-4:]}"


# the columns of a level compared as a study group (`lab compare` shows the same)
GROUP_COLUMNS = (("n", "right"), ("±", "right"), ("95% CI", "right"), ("p", "right"),
                 ("", "left"))


def comparison_table(rows: list[dict[str, Any]], wide: bool) -> Table:
    """As `lab compare`: the study's column only for runs that repeat its setup, and a note
    naming the setup fields in which the runs differ (`lab.views.compare.comparison_notes`).
    Levels compared as study groups take the room of augmentation and weight decay for n, ±,
    p and the verdict; the interval needs a wide screen too."""
    from lab.views.compare import comparison_notes
    from lab.views.study_compare import VERDICT_STYLE, group_cells

    study = any(r["seed_acc"] is not None for r in rows)
    grouped = any(r.get("group") for r in rows)
    setup = wide and not grouped  # augmentation and weight decay
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), expand=False,
                  caption_justify="left")
    for name, justify in (("L", "right"), ("run", "left"), ("model", "left"),
                          ("augmentation", "left"), ("WD", "right"), ("test acc", "right"),
                          ("Δ vs L1", "right"), *GROUP_COLUMNS, ("study", "right")):
        if (name in ("augmentation", "WD") and not setup) or (name == "study" and not study) \
                or (not grouped and (name, justify) in GROUP_COLUMNS) \
                or (name == "95% CI" and not wide):
            continue
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name not in ("model", ""), min_width=6 if name == "" else None)
    for r in rows:
        delta = r.get("delta_vs_l1")
        delta_text = Text("–") if delta is None else Text(
            f"{100 * delta:+.2f}", style="green" if delta > 0 else "red" if delta < 0 else "")
        cells: list[Any] = [str(r["level"] or "–"), Text(run_label(r), style="bold"),
                            Text(str(r["model"]))]  # record strings: plain text, never markup
        if setup:
            cells += [Text(str(r["augmentation"])), f"{r['weight_decay']:g}"]
        cells += [Text(_pct(r["test_acc"]), style="bold"), delta_text]
        if grouped:  # a level as the mean of its study's seeds: n, ±, interval, Welch's p
            group = group_cells(r)
            cells += [group["n"], group["std"], *([group["ci"]] if wide else []), group["p"],
                      Text(group["verdict"], style=VERDICT_STYLE.get(group["verdict"], ""))]
        if study:
            cells.append(_pct(r["seed_acc"]))
        table.add_row(*cells)
    if not rows:
        table.caption = "no finished runs to compare yet"
        return table
    setups = sorted({f"{r['dataset']} {r['image_size']}px {r['epochs']}ep" for r in rows})
    table.caption = Text("\n".join(["; ".join(setups) + " · Δ: points vs Level 1",
                                     *comparison_notes(rows)]))
    return table


class CompareScreen(Screen):
    """Shows a comparison computed off the UI thread; q or escape goes back."""

    BINDINGS = [
        Binding("escape,q,m", "app.pop_screen", "back"),
        Binding("r", "reload", "reload"),
    ]

    def __init__(self, runs_dir: Path, refs: list[str] | None = None) -> None:
        super().__init__()
        self.runs_dir, self.refs = Path(runs_dir), refs
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def compose(self) -> ComposeResult:
        what = f"{len(self.refs)} marked runs" if self.refs else \
            "latest finished run of each level"
        yield Static(Text.assemble((" Compare", "bold"), f" · {what}"), id="compare-title")
        with VerticalScroll(id="compare-body"):
            yield Static(Text("loading…", style="dim"), id="compare-table")
            with Horizontal(id="compare-charts"):
                yield Static(id="compare-bars")
                yield OverlayView(fixed_height=12, id="compare-overlay")
        yield KeyBar()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="compare")
    def _load(self) -> None:
        from lab.views.bands import curve_groups, read_configs
        from lab.views.compare import comparison

        notes: list[str] = []
        try:
            rows = comparison(self.runs_dir, self.refs,
                              on_skip=lambda _run_id, why: notes.append(why))
        except Exception as exc:  # noqa: BLE001 - one line on the screen, not a crash
            self.post_message(ComparisonLoaded([], {}, str(exc)))
            return
        epochs = {run_label(r): [e for e in read_events(self.runs_dir / r["run_id"] /
                                                        "metrics.jsonl")[0]
                                 if e.get("event") == "epoch"] for r in rows}
        groups = curve_groups(read_configs(self.runs_dir,
                                           {run_label(r): r["run_id"] for r in rows}))
        self.post_message(ComparisonLoaded(rows, epochs, None, notes, groups))

    def on_comparison_loaded(self, message: ComparisonLoaded) -> None:
        self.rows, self.notes = message.rows, message.notes
        table = self.query_one("#compare-table", Static)
        if message.error:
            table.update(Group(Text(f"! {message.error}", style="bold red"),
                               *(Text(f"! left out: {note}", style="yellow")
                                 for note in self.notes)))
            return
        table.update(self._table())
        if any(r.get("group") for r in self.rows):
            self.query_one("#compare-title", Static).update(Text.assemble(
                (" Compare", "bold"), " · latest finished run of each level, or its study's "
                                      "repeated seeds"))
        self.query_one(OverlayView).show(message.epochs, message.groups)
        self._draw_bars()

    def on_resize(self) -> None:
        if self.rows:
            self.query_one("#compare-table", Static).update(self._table())
            self._draw_bars()

    def _table(self) -> Any:
        """The table, and a line for each run left out because a record of it is corrupt."""
        table = comparison_table(self.rows, wide=self.size.width >= 100)
        if not self.notes:
            return table
        return Group(table, *(Text(f"! left out: {note}", style="yellow") for note in self.notes))

    def _draw_bars(self) -> None:
        bars = self.query_one("#compare-bars", Static)
        rows = [r for r in self.rows if r.get("test_acc") is not None]
        width = max(20, bars.size.width - 1 or self.size.width // 2 - 1)
        chart = bar_chart([run_label(r) for r in rows], [100 * r["test_acc"] for r in rows],
                          title="test accuracy (%)", width=width, height=12)
        bars.update(chart_text(chart))

    def names(self) -> list[str]:
        return [run_label(r) for r in self.rows]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"

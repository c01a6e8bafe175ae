"""The jobs-and-runs list: one table of rows, sortable, filterable, with marks for comparing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from lab.views.chart_parts import series_color
from lab.views.states import CORRUPT, look
from lab.views.study import PROGRESS_BUCKETS
from tui.model import SORTS, Row, age, sort_rows, with_studies

WIDE = 55  # from this many columns on, the list shows its extra columns


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int
    wide_only: bool = False


COLUMNS = (  # widths include a space after the text (the table has no cell padding)
    Col("mark", "", 2), Col("name", "job/run", 9), Col("state", "state", 12),
    Col("epoch", "   ep ", 6, wide_only=True), Col("data", "data", 8, wide_only=True),
    Col("val", "   val ", 7, wide_only=True), Col("test", "  test ", 7), Col("age", "age", 4),
)
WIDTHS = {c.key: c.width for c in COLUMNS}


class RunTable(DataTable):
    """The table itself; only adds keys (space marks) on top of DataTable's navigation."""

    BINDINGS = [
        Binding("space", "mark", "mark", key_display="space",
                tooltip="mark or unmark the run: marked runs overlay (tab 7) and compare; "
                "on a study's header: fold or unfold the study"),
        Binding("enter", "select_cursor", "fold", show=False,
                tooltip="on a study's header: fold or unfold its jobs and runs"),
        # DataTable's own home/end scroll sideways; in a list of rows they mean first and last
        Binding("home", "scroll_top", "first", show=False, tooltip="first row of the list"),
        Binding("end", "scroll_bottom", "last", show=False, tooltip="last row of the list"),
    ]

    class MarkToggled(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def action_mark(self) -> None:
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            if key is not None:
                self.post_message(self.MarkToggled(key))


class RunList(Vertical):
    """Owns the list's view: its rows, order, filter and marks are reactive; the table follows."""

    DEFAULT_CSS = """
    RunList { height: 1fr; }
    RunList > #list-title { height: 1; padding: 0 1; color: $text-muted; }
    RunList > Input { display: none; height: 1; border: none; padding: 0 1; }
    RunList.-filtering > Input { display: block; }
    RunList > RunTable { height: 1fr; }
    """

    rows: reactive[list[Row]] = reactive(list, always_update=True)
    sort: reactive[str] = reactive("newest")
    filter_text: reactive[str] = reactive("")
    marked: reactive[frozenset[str]] = reactive(frozenset)
    collapsed: reactive[frozenset[str]] = reactive(frozenset)  # studies shown as a header only

    class Highlighted(Message):
        """The cursor is on another row (or the same row changed)."""

        def __init__(self, row: Row | None) -> None:
            super().__init__()
            self.row = row

    class MarksChanged(Message):
        def __init__(self, rows: list[Row]) -> None:
            super().__init__()
            self.rows = rows

    class Folded(Message):
        """A study was collapsed or expanded: `collapsed` are the studies now collapsed."""

        def __init__(self, collapsed: frozenset[str]) -> None:
            super().__init__()
            self.collapsed = collapsed

    def __init__(self, clock: Callable[[], float] = time.time, sort: str = "newest",
                 collapsed: frozenset[str] = frozenset(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_reactive(RunList.sort, sort)
        self.set_reactive(RunList.collapsed, frozenset(collapsed))
        self._clock = clock
        self._shown: list[Row] = []
        self._wide: bool | None = None
        self._current: str | None = None  # key of the highlighted row
        self._rendered: dict[str, list[Text]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="list-title")
        yield Input(placeholder="filter: words in name, state, data, level…", id="filter")
        yield RunTable(cursor_type="row", zebra_stripes=False, cell_padding=0, id="table")

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    @property
    def shown(self) -> list[Row]:
        return list(self._shown)

    @property
    def current(self) -> Row | None:
        return next((r for r in self._shown if r.key == self._current), None)

    def marked_rows(self) -> list[Row]:
        by_key = {r.key: r for r in self.rows}
        rows = [by_key[k] for k in self.marked if k in by_key]
        return sorted(rows, key=lambda r: (r.level or 99, r.label))

    # ---- reactive views ------------------------------------------------------------------
    def watch_rows(self) -> None:
        self._rebuild()

    def watch_sort(self) -> None:
        self._rebuild()

    def watch_filter_text(self) -> None:
        self._rebuild()

    def watch_marked(self) -> None:
        self._rebuild()
        self.post_message(self.MarksChanged(self.marked_rows()))

    def watch_collapsed(self) -> None:
        self._rebuild()
        self.post_message(self.Folded(self.collapsed))

    @property
    def studies(self) -> list[str]:
        """The studies of the list's rows, in name order."""
        return sorted({r.study for r in self.rows if r.study})

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE
        if wide != self._wide:
            self._wide = wide
            self._rebuild(columns=True)

    def _rebuild(self, columns: bool = False) -> None:
        """Rebuild the table when the order changed; otherwise update only cells that differ,
        so a refresh every second or two keeps the cursor and the scroll position."""
        if not self.is_mounted or self._wide is None:
            return
        table = self.table
        matching = sort_rows([r for r in self.rows if not self.filter_text
                              or r.matches(self.filter_text)], self.sort)
        visible = with_studies(matching, self.rows, self.collapsed)
        keys = [r.key for r in visible]
        self._current = self._in_view(self._current, keys)
        now = self._clock()
        rendered = {r.key: self._cells(r, now) for r in visible}
        if columns or [r.key for r in self._shown] != keys or not table.columns:
            table.clear(columns=True)
            for col in COLUMNS:
                if self._wide or not col.wide_only:
                    table.add_column(col.label, width=col.width, key=col.key)
            for key in keys:
                table.add_row(*rendered[key], key=key)
            if self._current in keys:
                table.move_cursor(row=keys.index(self._current), animate=False)
        else:
            for key, cells in rendered.items():
                before = self._rendered.get(key)
                for i, (col, cell) in enumerate(zip(self._columns(), cells, strict=True)):
                    if before is None or _sig(before[i]) != _sig(cell):
                        table.update_cell(key, col, cell)
        self._shown, self._rendered = visible, rendered
        self._update_title(len(matching))
        self._current = self._key_under_cursor()
        self.post_message(self.Highlighted(self.current))

    def _columns(self) -> list[str]:
        return [c.key for c in COLUMNS if self._wide or not c.wide_only]

    def _cells(self, row: Row, now: float) -> list[Text]:
        if row.is_header:
            return self._header_cells(row, now)
        mark = "●" if row.key in self.marked else " "
        colour = series_color(row.label) if row.key in self.marked else ""
        icon = "!" if row.warning and row.state != CORRUPT else look(row.state).icon
        icon_style = "bold yellow" if row.warning else look(row.state).style
        state = row.state
        if row.state == "running" and row.epochs:
            state = f"run {row.epoch}/{row.epochs}"
        cells = {
            "mark": Text.assemble((mark, colour), (icon, icon_style)),
            "name": Text((" " if row.study else "") + row.name,  # under its study's header
                         style="bold" if row.key in self.marked else ""),
            "state": Text(state, style=look(row.state).style),
            "epoch": _right(f"{row.epoch}/{row.epochs}" if row.epochs else "", "epoch"),
            "data": Text(row.dataset),
            "val": _right(_pct(row.val_acc), "val", style="dim"),
            "test": _right(_pct(row.test_acc), "test", style="bold"),
            "age": _right(age(now - row.created) if row.created else "", "age", gap=0),
        }
        return [cells[k] for k in self._columns()]

    def _header_cells(self, row: Row, now: float) -> list[Text]:
        """A study's header: fold mark, name, counts by state (✓ done ▶ running · queued
        ✗ failed ⊘ stopped), the best finished run's test accuracy (▲, in the val column)
        and the mean of the finished ones (μ, in the test column)."""
        p = row.progress
        assert p is not None
        fold = "▸" if row.study in self.collapsed else "▾"
        counts = [(f"{look(PROGRESS_BUCKETS[b][0]).icon}{n}", look(PROGRESS_BUCKETS[b][0]).style)
                  for b, n in p.counts.items() if n]
        room = WIDTHS["state"] - 1
        gap = " " if sum(len(t) + 1 for t, _ in counts) - 1 <= room else ""
        state = Text(gap).join(Text(t, style=style) for t, style in counts)
        state.truncate(room)
        state.append(" " * (WIDTHS["state"] - state.cell_len))
        cells = {
            "mark": Text(f" {fold}", style="bold"),
            "name": Text(row.name, style="bold underline"),
            "state": state,
            "epoch": _right(f"×{p.total}", "epoch", style="dim"),
            "data": Text(row.dataset),
            "val": _right("" if p.best is None else f"▲{_pct(p.best)}", "val", style="dim"),
            "test": _right("" if p.mean is None else f"μ{_pct(p.mean)}", "test", style="bold"),
            "age": _right(age(now - row.created) if row.created else "", "age", gap=0),
        }
        return [cells[k] for k in self._columns()]

    def _update_title(self, shown: int) -> None:
        total = len(self.rows)
        text = f"Jobs & runs · {self.sort}"
        if self.filter_text:
            text += f" · “{self.filter_text}” {shown}/{total}"
        else:
            text += f" · {total}"
        if self.marked:
            text += f" · {len(self.marked)} marked"
        self.query_one("#list-title", Static).update(text)

    def _key_under_cursor(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ---- events ----------------------------------------------------------------------------
    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = event.row_key.value
        if key != self._current:
            self._current = key
            self.post_message(self.Highlighted(self.current))

    @on(RunTable.MarkToggled)
    def _toggle(self, event: RunTable.MarkToggled) -> None:
        event.stop()
        header = self._header(event.key)
        if header is not None:
            self.fold(header.study)
        else:
            self.marked = self.marked ^ {event.key}

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        header = self._header(event.row_key.value)
        if header is not None:
            self.fold(header.study)

    def _header(self, key: str | None) -> Row | None:
        row = next((r for r in self._shown if r.key == key), None)
        return row if row is not None and row.is_header else None

    def fold(self, study: str) -> None:
        """Collapse or expand one study (a cursor on one of its rows goes to its header)."""
        self.collapsed = self.collapsed ^ {study}

    def fold_all(self) -> None:
        """Collapse every study, or expand them all when every one is collapsed already."""
        studies = frozenset(self.studies)
        if studies and studies <= self.collapsed:
            self.collapsed = self.collapsed - studies
        else:
            self.collapsed = self.collapsed | studies

    def _in_view(self, key: str | None, keys: list[str]) -> str | None:
        """`key`, or its study's header when the row is hidden in a collapsed (or filtered)
        study: the cursor stays with what it was on instead of jumping to the top."""
        if key in keys:
            return key
        row = next((r for r in self.rows if r.key == key), None)
        header = f"study:{row.study}" if row is not None and row.study else None
        return header if header in keys else key

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.remove_class("-filtering")
        self.table.focus()

    def select(self, key: str) -> None:
        """Put the cursor on the row with this key, now or when the rows arrive."""
        self._current = key
        keys = [r.key for r in self._shown]
        if key in keys and self.is_mounted:
            self.table.move_cursor(row=keys.index(key), animate=False)

    def open_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    def clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.filter_text = ""
        self.remove_class("-filtering")
        self.table.focus()

    def cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]


def _right(value: str, column: str, style: str = "", gap: int = 1) -> Text:
    """Right-aligned by hand: Rich strips trailing spaces from right-justified text, and the
    table has no cell padding, so the gap to the next column is part of the text."""
    width = WIDTHS[column] - gap
    return Text(value.rjust(width)[-width:] + " " * gap, style=style)


def _sig(cell: Text) -> tuple:
    return cell.plain, str(cell.style), tuple(cell.spans)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"

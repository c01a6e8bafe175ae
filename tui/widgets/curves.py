"""Charts: a run's curves with its progress, and the overlay of several runs' validation accuracy.

The charts are plotext text from `lab.views.charts` (the CLI draws the same ones), sized to the
widget and redrawn when it is resized or the data changes.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from tui.detail import Progress, RunDetail, progress


def chart_text(ansi: str) -> Text:
    text = Text.from_ansi(ansi)
    text.no_wrap = True
    text.overflow = "crop"
    return text


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA –"
    s = int(seconds)
    return f"ETA {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"ETA {s // 60}:{s % 60:02d}"


def bar(fraction: float, width: int) -> Text:
    done = round(max(0.0, min(1.0, fraction)) * width)
    return Text.assemble(("━" * done, "bold #59c45a"), ("━" * (width - done), "grey37"))


def progress_line(p: Progress, width: int) -> Text:
    """`epoch 3/5 ━━━━━━━━━━━━━━━━━ 61%  9,812 img/s  ETA 0:41`; on narrow panes the bar gets
    its own line under the numbers rather than a sliver between them."""
    speed = f"  {p.images_per_s:,.0f} img/s" if p.images_per_s else ""
    head = f"epoch {p.epoch}/{p.epochs} "
    tail = f" {100 * p.fraction:3.0f}%{speed}  {eta_text(p.eta_s)}"
    room = width - len(head) - len(tail)
    if room >= 12:
        return Text.assemble(head, bar(p.fraction, room), tail)
    return Text.assemble(head, tail.lstrip(), "\n", bar(p.fraction, max(4, width - 1)))


class CurvesView(VerticalScroll):
    """Loss and accuracy per epoch, training loss per step, and a progress line while running."""

    DEFAULT_CSS = """
    CurvesView { height: 1fr; scrollbar-gutter: stable; scrollbar-size-vertical: 1; }
    CurvesView > Static { width: 1fr; height: auto; text-wrap: nowrap; text-overflow: clip; }
    CurvesView > #curves-note { color: $warning; text-wrap: wrap; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)
    rate: reactive[tuple[float, float] | None] = reactive(None)

    def compose(self) -> ComposeResult:
        yield Static(id="curves-note")
        yield Static(id="curves-progress")
        yield Static(id="curves-epochs")
        yield Static(id="curves-steps")
        yield Static(id="curves-system")

    def watch_detail(self) -> None:
        self._draw()

    def watch_rate(self) -> None:
        self._draw_progress()

    def on_resize(self) -> None:
        self._draw()

    def _draw_progress(self) -> int:
        widget = self.query_one("#curves-progress", Static)
        d = self.detail
        if d is None or d.state not in ("running", "cancelling"):
            widget.display = False
            return 0
        p = progress(d, self.rate)
        widget.display = p is not None
        if p is None:
            return 0
        line = progress_line(p, self.scrollable_content_region.width)
        widget.update(line)
        return len(line.plain.splitlines())

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        d = self.detail
        region = self.scrollable_content_region  # without the scrollbar's gutter
        width, height = max(10, region.width), max(10, region.height)
        note = self.query_one("#curves-note", Static)
        notes = [] if d is None else [e for e in d.errors if "metrics" in e or "status" in e]
        note.display = bool(notes)
        note.update("\n".join(f"! {n}" for n in notes))
        used = self._draw_progress() + len(notes)
        epochs_w = self.query_one("#curves-epochs", Static)
        steps_w = self.query_one("#curves-steps", Static)
        system_w = self.query_one("#curves-system", Static)
        system_w.display = bool(d is not None and d.run_id is not None and d.system)
        if d is None:
            epochs_w.update(Text("select a run", style="dim"))
            steps_w.update("")
            return
        if d.run_id is None:
            if d.state in ("queued", "interrupted"):
                text = Text(f"{d.state}: curves appear once a worker starts it", style="dim")
            else:
                error = (d.job or {}).get("error")
                text = Text(f"{d.state} before it had a run" + (f": {error}" if error else ""),
                            style="red" if d.state == "failed" else "dim")
            note.update(text)  # the note wraps; the charts' lines must not
            note.display = True
            epochs_w.update("")
            steps_w.update("")
            return
        from lab.views.charts import epoch_chart, step_chart, system_chart  # after the list

        room = max(12, height - used)
        below = 0
        if d.system:  # under the loss: the run's CPU (and GPU) use over time
            below = max(6, room // 5)
            system_w.update(chart_text(system_chart(d.system, width=width, height=below)))
        top = max(8, (room - below) * 3 // 5)
        epochs_w.update(chart_text(epoch_chart(d.epochs(), width=width, height=top)))
        steps = [e for e in d.steps() if e.get("loss") is not None]
        steps_w.update(chart_text(step_chart(steps, width=width,
                                             height=max(6, room - top - below))))


class OverlayView(Static):
    """Validation accuracy of several runs on shared axes, one stable colour per run; runs
    that form a group (`groups`: name -> their labels) are drawn as the group's mean with a
    min–max band (`lab.views.bands`)."""

    DEFAULT_CSS = """
    OverlayView { width: 1fr; height: 1fr; min-height: 8; text-wrap: nowrap; text-overflow: clip; }
    """

    series: reactive[dict[str, list[dict]]] = reactive(dict, always_update=True)

    def __init__(self, *, fixed_height: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._fixed_height = fixed_height
        self.groups: dict[str, list[str]] = {}

    def show(self, series: dict[str, list[dict]], groups: dict[str, list[str]]) -> None:
        """New curves: each run's epoch events, and which of them form groups."""
        self.groups = groups
        self.series = series

    def watch_series(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        if not self.series:
            self.update(Text("mark runs with space to overlay their validation accuracy",
                             style="dim"))
            return
        from lab.views.bands import overlay_curves
        from lab.views.charts import overlay_chart

        width = max(20, self.size.width - 1)
        height = self._fixed_height or max(8, self.size.height - 1)
        points, bands = overlay_curves(self.series, self.groups)
        chart = overlay_chart(points, title="validation accuracy", ylabel="%", width=width,
                              height=height, xlabel="epoch", bands=bands)
        missing = [n for n, p in points.items() if not p]
        parts: list = [chart_text(chart)]
        if missing:
            parts.append(Text(f"no epochs yet: {', '.join(missing)}", style="dim"))
        self.update(Group(*parts))

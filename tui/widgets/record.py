"""The run's record as text: its config (what differs from its level's preset stands out) and
its log (the job's output and the run's events)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from lab.levels import LEVELS
from tui.detail import RunDetail

STATUS_KEYS = ("state", "device", "created", "started", "finished", "updated", "pid", "host",
               "error", "gradcam_error")
JOB_KEYS = ("id", "state", "priority", "attempts", "gpu", "worker", "slurm_id", "slurm_state",
            "created", "started", "finished", "error")


class ConfigView(VerticalScroll):
    DEFAULT_CSS = """
    ConfigView { height: 1fr; }
    ConfigView > Static { height: auto; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)

    def compose(self) -> ComposeResult:
        yield Static()

    def watch_detail(self) -> None:
        self.query_one(Static).update(config_renderable(self.detail))


def config_renderable(detail: RunDetail | None) -> Any:
    if detail is None:
        return Text("select a run", style="dim")
    parts: list[Any] = []
    for err in detail.errors:
        parts.append(Text(f"! {err}", style="bold red"))
    config = detail.config or {}
    preset = {}
    level = config.get("level")
    if level in LEVELS:
        preset = LEVELS[level].config.to_dict()
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("run", detail.run_id or "(not started)")
    for key, value in config.items():
        text = Text(_fmt(value))
        if preset and key in preset and _fmt(preset[key]) != _fmt(value):
            text.stylize("yellow")
            text.append(f"  (L{level}: {_fmt(preset[key])})", style="dim")
        table.add_row(key, text)
    parts += [Text("config · yellow: not the level's preset", style="dim"), table]
    if detail.status:
        status = Table.grid(padding=(0, 1))
        status.add_column(style="bold", no_wrap=True)
        status.add_column()
        for key in STATUS_KEYS:
            if detail.status.get(key) not in (None, ""):
                status.add_row(key, Text(_fmt(detail.status[key])))  # never markup
        parts += [Text(""), Text("status", style="dim"), status]
    if detail.job:
        job = Table.grid(padding=(0, 1))
        job.add_column(style="bold", no_wrap=True)
        job.add_column()
        for key in JOB_KEYS:
            if detail.job.get(key) not in (None, ""):
                job.add_row(key, Text(_fmt(detail.job[key])))
        parts += [Text(""), Text("job", style="dim"), job]
    return Group(*parts)


class LogView(VerticalScroll):
    DEFAULT_CSS = """
    LogView { height: 1fr; }
    LogView > Static { height: auto; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)

    def compose(self) -> ComposeResult:
        yield Static()

    def watch_detail(self) -> None:
        at_end = self.scroll_y >= self.max_scroll_y - 1
        self.query_one(Static).update(log_text(self.detail))
        if at_end:
            self.call_after_refresh(self.scroll_end, animate=False)


def log_text(detail: RunDetail | None) -> Text:
    if detail is None:
        return Text("select a run", style="dim")
    text = Text("l: full screen, following the log as it grows, with search and wrap\n",
                style="dim")
    for err in detail.errors:
        text.append(f"! {err}\n", style="bold red")
    if detail.log:
        text.append(f"job #{detail.job['id'] if detail.job else '?'} output (tail)\n", style="dim")
        text.append("\n".join(detail.log) + "\n\n")
    if detail.events:
        text.append("events (metrics.jsonl)\n", style="dim")
        for event in detail.events:
            text.append(event_line(event) + "\n",
                        style="bold" if event.get("event") in ("epoch", "test") else "")
    elif not detail.log:
        text.append("nothing logged yet", style="dim")
    return text


def event_line(e: dict[str, Any]) -> str:
    kind = e.get("event", "?")
    if kind == "start":
        return (f"start   {e.get('time', '')} on {e.get('device', '?')} "
                f"({e.get('precision', '?')}), {e.get('epochs', '?')} epochs × "
                f"{e.get('steps_per_epoch', '?')} steps" +
                "".join(f"\n        note: {n}" for n in e.get("notes") or []))
    if kind == "step":
        return f"step    {e.get('step')}  epoch {e.get('epoch')}  loss {_num(e.get('loss'))}"
    if kind == "epoch":
        return (f"epoch   {e.get('epoch')}  train loss {_num(e.get('train_loss'))} "
                f"acc {_pct(e.get('train_acc'))}  val loss {_num(e.get('val_loss'))} "
                f"acc {_pct(e.get('val_acc'))}  {e.get('seconds', '?')}s "
                f"{e.get('images_per_s', '?')} img/s")
    if kind == "test":
        return f"test    loss {_num(e.get('test_loss'))}  accuracy {_pct(e.get('test_acc'))}"
    if kind == "resume":
        return f"resume  from epoch {e.get('epoch')} at {e.get('time', '')}"
    return f"{kind:<7} " + " ".join(f"{k}={v}" for k, v in e.items() if k != "event")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "–"

"""Each GPU's use and memory over the last samples, as sparklines with the current numbers
(as nvtop draws them): one row a GPU, in columns when there are more than `MAX_ROWS`.
Hidden where there is no GPU (the top bar then shows the CPU)."""

from __future__ import annotations

from math import ceil

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.device import GB, HISTORY, DeviceHistory, DeviceStat, spark

MAX_ROWS = 4  # more GPUs than this go side by side


def level_style(percent: float | None) -> str:
    if percent is None:
        return "dim"
    return "green" if percent < 50 else "yellow" if percent < 85 else "red"


def _pct(value: float | None) -> str:
    return f"{value:3.0f}%" if value is not None else "  –%"


class GpuSparks(Static):
    DEFAULT_CSS = """
    GpuSparks { height: auto; max-height: 4; padding: 0 1; background: $panel;
                text-wrap: nowrap; text-overflow: clip; display: none; }
    """

    sample: reactive[list[DeviceStat]] = reactive(list, always_update=True)

    def __init__(self, history: int = HISTORY, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.history = DeviceHistory(history)

    def watch_sample(self, stats: list[DeviceStat]) -> None:
        self.history.add(stats)
        self.display = bool(self.history.names)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        names = self.history.names
        if not names or not self.is_mounted:
            return
        width = max(30, (self.size.width or self.app.size.width - 2))
        columns = ceil(len(names) / MAX_ROWS)
        rows = ceil(len(names) / columns)
        cell = (width - 3 * (columns - 1)) // columns
        lines = []
        for r in range(rows):
            line = Text()
            for c in range(columns):
                i = c * rows + r
                if i >= len(names):
                    break
                if c:
                    line.append(" │ ", style="dim")
                line.append_text(self.cell(names[i], cell))
            lines.append(line)
        self.update(Text("\n").join(lines))

    def cell(self, name: str, width: int) -> Text:
        """`GPU 0 use ▁▂▅▇ 87%  mem ▃▃▄▅ 22% 31.2/139 GB`, the sparklines as wide as fits."""
        stat = self.history.latest[name]
        util, mem = self.history.util(name), self.history.mem(name)
        memory = f" {(stat.mem_used or 0) / GB:.1f}/{stat.mem_total / GB:.0f} GB" \
            if stat.mem_total else ""
        fixed = len(name) + len(" use ") + 5 + len("  mem ") + 5 + len(memory)
        room = max(2, min(self.history.size, (width - fixed) // 2))
        # newest on the right, beside its number; the line fills from the right as nvtop's do
        text = Text.assemble((name, "bold"), " use ", " " * (room - min(room, len(util))))
        for v, block in zip(util[-room:], spark(util, room), strict=True):
            text.append(block, style=level_style(v))
        now = util[-1] if util else None
        text.append(" ")
        text.append(_pct(now), style=level_style(now))
        text.append("  mem ")
        text.append(spark(mem, room).rjust(room), style="cyan")
        text.append(" " + _pct(mem[-1] if mem else None) + memory)
        text.truncate(width)
        return text

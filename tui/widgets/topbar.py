"""The top: where the console looks, whether a worker is alive, what the devices do (the CPU
on the line itself; each GPU's use and memory over time on a row of its own beneath it)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Static

from tui.device import DeviceStat
from tui.widgets.gpu_sparks import GpuSparks


class DevicePanel(Static):
    """CPU use and memory, on the top line (GPUs have their sparklines beneath it)."""

    DEFAULT_CSS = "DevicePanel { width: auto; height: 1; text-wrap: nowrap; }"

    stats: reactive[list[DeviceStat]] = reactive(list, always_update=True)

    def watch_stats(self) -> None:
        self.update(Text(" │ ".join(s.line() for s in self.stats) or "devices: …",
                         no_wrap=True, overflow="ellipsis"))


class TopBar(Vertical):
    DEFAULT_CSS = """
    TopBar { height: auto; background: $panel; }
    TopBar > #line { height: 1; }
    TopBar #where { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TopBar DevicePanel { max-width: 60%; padding: 0 1; }
    """

    worker_rows: reactive[list[dict[str, Any]] | None] = reactive(None, always_update=True)
    problem: reactive[str] = reactive("")
    devices: reactive[list[DeviceStat]] = reactive(list, always_update=True)

    def __init__(self, runs_label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runs_label = runs_label

    def compose(self) -> ComposeResult:
        with Horizontal(id="line"):
            yield Static(id="where")
            yield DevicePanel()
        yield GpuSparks()

    def watch_devices(self, stats: list[DeviceStat]) -> None:
        """GPUs go to their sparklines; the line keeps the rest (the CPU where there is no GPU)."""
        rest = [s for s in stats if not s.is_gpu]
        panel = self.query_one(DevicePanel)
        panel.display = bool(rest) or not stats
        panel.stats = rest
        self.query_one(GpuSparks).sample = stats

    def on_mount(self) -> None:
        self._draw()

    def watch_worker_rows(self) -> None:
        self._draw()

    def watch_problem(self) -> None:
        self._draw()

    def _draw(self) -> None:
        text = Text.assemble((" lab", "bold"), " ─ ", (self._runs_label, "italic"), " ─ ")
        if self.problem:
            text.append(self.problem, style="bold red")
        elif self.worker_rows is None:
            text.append("worker: …", style="dim")
        elif not self.worker_rows:
            text.append("worker: none (w starts one)", style="yellow")
        else:
            slots = sorted({s for w in self.worker_rows for s in w["slots"]})
            text.append(f"worker: {len(self.worker_rows)} alive on {','.join(slots)}",
                        style="green")
        self.query_one("#where", Static).update(text)

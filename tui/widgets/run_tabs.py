"""The tabs that belong to the selected row: one view per tab, all fed the same detail."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static, TabbedContent, TabPane

from tui.detail import RunDetail
from tui.widgets.curves import CurvesView, OverlayView
from tui.widgets.gradcam_view import GradcamView
from tui.widgets.record import ConfigView, LogView
from tui.widgets.results import ConfusionView, PerClassView

TABS = (("curves", "Curves"), ("per-class", "Per-class"), ("confusion", "Confusion"),
        ("gradcam", "Grad-CAM"), ("config", "Config"), ("log", "Log"), ("overlay", "Overlay"))
# When the full names do not fit (80 columns), every tab still shows, under a shorter name.
SHORT = {"curves": "Curves", "per-class": "Class", "confusion": "Matrix", "gradcam": "CAM",
         "config": "Cfg", "log": "Log", "overlay": "Overlay"}


class RunTabs(Vertical):
    """Hands `detail` to every view; the overlay gets the marked runs' epochs instead."""

    DEFAULT_CSS = """
    RunTabs { height: 1fr; }
    RunTabs TabbedContent { height: 1fr; }
    RunTabs TabPane { padding: 0 0 0 1; height: 1fr; }
    RunTabs ContentSwitcher { height: 1fr; }
    RunTabs > #tabs-hint { display: none; height: auto; padding: 1 2; }
    RunTabs.-hint > #tabs-hint { display: block; }
    RunTabs.-hint > TabbedContent { display: none; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)
    hint: reactive[RenderableType | None] = reactive(None)  # instead of the tabs (no runs)

    def compose(self) -> ComposeResult:
        views = {"curves": CurvesView, "per-class": PerClassView, "confusion": ConfusionView,
                 "gradcam": GradcamView, "config": ConfigView, "log": LogView,
                 "overlay": OverlayView}
        with TabbedContent(initial="curves", id="tabs"):
            for pane_id, title in TABS:
                with TabPane(title, id=pane_id):
                    yield views[pane_id](id=f"view-{pane_id}")
        yield Static(id="tabs-hint")

    def watch_hint(self, hint: RenderableType | None) -> None:
        self.query_one("#tabs-hint", Static).update(hint or "")
        self.set_class(hint is not None, "-hint")

    def on_resize(self) -> None:
        """Full tab names where they all fit, short ones where they would scroll out of view."""
        tabbed = self.query_one(TabbedContent)
        tabs = [tabbed.get_tab(pane) for pane, _title in TABS]
        gutter = max((t.styles.padding.width for t in tabs), default=2)
        fits = sum(len(title) + gutter for _pane, title in TABS) <= self.size.width
        for tab, (pane, title) in zip(tabs, TABS, strict=True):
            label = title if fits else SHORT[pane]
            if str(tab.label) != label:
                tab.label = label

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    @active.setter
    def active(self, pane_id: str) -> None:
        self.query_one(TabbedContent).active = pane_id

    def watch_detail(self, detail: RunDetail | None) -> None:
        for view in (CurvesView, PerClassView, ConfusionView, GradcamView, ConfigView,
                     LogView):
            self.query_one(view).detail = detail

    @property
    def curves(self) -> CurvesView:
        return self.query_one(CurvesView)

    @property
    def overlay(self) -> OverlayView:
        return self.query_one(OverlayView)

    @property
    def gradcam(self) -> GradcamView:
        return self.query_one(GradcamView)

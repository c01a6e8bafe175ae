"""The tabs that belong to the selected row: one view per tab, all fed the same detail."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import TabbedContent, TabPane

from tui.detail import RunDetail
from tui.widgets.curves import CurvesView, OverlayView
from tui.widgets.gradcam_view import GradcamView
from tui.widgets.record import ConfigView, LogView
from tui.widgets.results import ConfusionView, PerClassView

TABS = (("curves", "Curves"), ("per-class", "Per-class"), ("confusion", "Confusion"),
        ("gradcam", "Grad-CAM"), ("config", "Config"), ("log", "Log"), ("overlay", "Overlay"))


class RunTabs(Vertical):
    """Hands `detail` to every view; the overlay gets the marked runs' epochs instead."""

    DEFAULT_CSS = """
    RunTabs { height: 1fr; }
    RunTabs TabbedContent { height: 1fr; }
    RunTabs TabPane { padding: 0 0 0 1; height: 1fr; }
    RunTabs ContentSwitcher { height: 1fr; }
    """

    detail: reactive[RunDetail | None] = reactive(None, always_update=True)

    def compose(self) -> ComposeResult:
        views = {"curves": CurvesView, "per-class": PerClassView, "confusion": ConfusionView,
                 "gradcam": GradcamView, "config": ConfigView, "log": LogView,
                 "overlay": OverlayView}
        with TabbedContent(initial="curves", id="tabs"):
            for pane_id, title in TABS:
                with TabPane(title, id=pane_id):
                    yield views[pane_id](id=f"view-{pane_id}")

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

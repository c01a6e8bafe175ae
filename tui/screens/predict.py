"""The console's Predict action on a finished run: a dialog asks for an image, a folder or an
archive; a screen shows the answers (a table, scored when the folder is labelled) beside the
heatmaps, ← → walking them.

The work (building the model, reading the images, Grad-CAM) runs in a thread worker that posts
one message back; any failure is one line on the screen. Heatmaps go to a temporary folder that
is removed when the screen closes (`lab predict --gradcam --out DIR` keeps them).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Static

from tui.widgets.fitted_image import FittedImage


class PredictDialog(ModalScreen[Path | None]):
    """Asks for the path; a path that is not there is told here, the dialog stays open."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "go", "Predict")]

    def __init__(self, run_id: str, value: str = "") -> None:
        super().__init__()
        self._run_id, self._value = run_id, value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Predict", "bold"), f" with {self._run_id}"))
            yield Input(self._value, placeholder="an image, a folder or a .zip/.tar.gz",
                        compact=True, id="predict-path")
            yield Static(id="job-error")
            yield Static(Text("a folder of <class>/ folders is also scored; enter or ctrl+s "
                              "predicts", style="dim"))
            with Horizontal(id="dialog-buttons"):
                yield Button("Predict", variant="primary", id="go")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#predict-path", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#go")
    def action_go(self) -> None:
        raw = self.query_one("#predict-path", Input).value.strip()
        error = self.query_one("#job-error", Static)
        path = Path(raw).expanduser() if raw else None
        if path is None or not path.exists():
            error.update(Text(f"✗ no file or folder at {raw!r}" if raw else
                              "✗ give a file or folder", style="bold red"))
            error.display = True
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PredictScreen(Screen[None]):
    """The answers of one run about the images under one path."""

    DEFAULT_CSS = """
    PredictScreen { padding: 0 1; }
    PredictScreen #predict-title { height: 1; background: $panel; }
    PredictScreen #predict-body { height: 1fr; }
    PredictScreen #predict-answers { width: 1fr; height: 1fr; }
    PredictScreen #predict-side { width: 1fr; height: 1fr; }
    PredictScreen #predict-image { width: 1fr; height: 1fr; align: center middle; }
    PredictScreen #predict-caption { height: auto; max-height: 4; }
    """
    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("right,down,n,j", "step(1)", "next", key_display="→"),
        Binding("left,up,p,k", "step(-1)", "previous", key_display="←"),
    ]

    class Done(Message):
        """The worker's outcome: the report, or the one line that says why there is none."""

        def __init__(self, report: Any = None, error: str | None = None,
                     problems: list[str] | None = None) -> None:
            super().__init__()
            self.report, self.error, self.problems = report, error, problems or []

    def __init__(self, runs_dir: Path, data_dir: Path, run_id: str, path: Path) -> None:
        super().__init__()
        self.runs_dir, self.data_dir, self.run_id, self.path = runs_dir, data_dir, run_id, path
        self.heatmaps = Path(tempfile.mkdtemp(prefix="lab-predict-"))
        self.report: Any = None
        self.index = 0

    def compose(self) -> ComposeResult:
        yield Static(id="predict-title")
        with Horizontal(id="predict-body"):
            with VerticalScroll(id="predict-answers"):
                yield Static(Text(f"predicting {self.path} …", style="dim"), id="predict-table")
            with Vertical(id="predict-side"):
                yield FittedImage(id="predict-image")
                yield Static(id="predict-caption")

    def on_mount(self) -> None:
        self._title()
        self.predict()

    def _title(self) -> None:
        count = len(self.report.predictions) if self.report else 0
        where = f"  {self.index + 1}/{count}" if count else ""
        self.query_one("#predict-title", Static).update(Text.assemble(
            ("Predict ", "bold"), f"{self.run_id} on {self.path}{where}",
            ("   ← → heatmaps   escape back", "dim")))

    @work(thread=True, exclusive=True, group="predict", exit_on_error=False)
    def predict(self) -> None:
        problems: list[str] = []
        try:
            from lab.explain.predict import predict_paths
            from lab.explain.trained import load_trained
            from lab.runs import RunDir

            trained = load_trained(RunDir(self.runs_dir / self.run_id), "last", "auto",
                                   data_dir=self.data_dir)
            report = predict_paths(trained, [self.path], gradcam_dir=self.heatmaps,
                                   on_error=lambda name, why: problems.append(f"{name}: {why}"))
        except Exception as exc:  # noqa: BLE001 - every failure is a line, never a crash
            self.post_message(self.Done(error=str(exc).splitlines()[0] if str(exc) else
                                        type(exc).__name__))
            return
        self.post_message(self.Done(report, problems=problems))

    def on_predict_screen_done(self, message: Done) -> None:
        table = self.query_one("#predict-table", Static)
        report = message.report
        if report is None or not report.predictions:
            why = message.error or (f"nothing could be predicted: {len(message.problems)} "
                                    "file(s) failed" if message.problems else "no images found")
            table.update(Text(f"✗ {why}", style="bold red"))
            return
        self.report = report
        table.update(answers_table(report, message.problems))
        self.index = 0
        self._show()

    def _show(self) -> None:
        answer = self.report.predictions[self.index]
        image = self.query_one(FittedImage)
        caption = caption_of(answer)
        try:
            image.show(Path(answer["heatmap"]) if answer.get("heatmap") else None)
        except OSError as exc:
            image.show(None)
            caption = f"! cannot read the heatmap: {exc}"
        self.query_one("#predict-caption", Static).update(caption)
        self._title()

    def action_step(self, delta: int) -> None:
        if self.report is not None:
            self.index = (self.index + delta) % len(self.report.predictions)
            self._show()

    def action_back(self) -> None:
        self.dismiss(None)

    def on_unmount(self) -> None:
        shutil.rmtree(self.heatmaps, ignore_errors=True)


def caption_of(answer: dict[str, Any]) -> str:
    top = ", ".join(f"{a['class']} {100 * a['probability']:.1f}%" for a in answer["top"])
    label = f"  (true {answer['label']})" if "label" in answer else ""
    return f"{answer['file']}\n{top}{label}"


def answers_table(report: Any, problems: list[str]) -> Any:
    """The answers, the score of the labelled images, the files that failed (one line each)."""
    from rich.console import Group

    table = Table(title=f"{len(report.predictions)} image(s), weights {report.weights} "
                        f"(epoch {report.epoch}){', flip TTA' if report.tta else ''}",
                  title_justify="left", expand=True)
    table.add_column("file", overflow="fold", ratio=2)
    table.add_column("answer", ratio=1)
    for answer in report.predictions:
        best = answer["top"][0]
        style = "" if "label" not in answer else ("green" if answer["label"] == best["class"]
                                                  else "red")
        table.add_row(Path(answer["file"]).name,
                      Text(f"{best['class']} {100 * best['probability']:.1f}%", style=style))
    parts: list[Any] = [table]
    if report.summary is not None:
        parts.append(Text(f"accuracy {100 * report.summary['accuracy']:.2f}% on "
                          f"{report.summary['images']} labelled image(s)", style="bold"))
    parts += [Text(f"✗ {line}", style="red") for line in problems]
    parts += [Text(note, style="dim") for note in report.notes]
    return Group(*parts)

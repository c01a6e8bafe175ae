"""The new-job dialog: a level and a few overrides, checked exactly as `lab submit` checks them.

A blank field keeps the level's preset (its value is the placeholder), so the dialog never
silently changes what a level means. The data set is chosen from what a worker here can load
(`digits` and the cached sets) or an image folder's path, and checked with the data set and
weights before the dialog closes (`lab.queue.actions.queueable`, as `lab submit` does). The
dialog starts from the last values submitted (tui/state.py, section `new_job`), or, as a clone,
from a run's config. Seeds, a sweep or a study name make it a study (`lab.queue.studies`, the
calls `lab submit --seeds --sweep --study` makes); those three start blank every time, so a
study is never added to by accident. It only validates; the main screen submits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from lab.errors import LabError
from lab.levels import LEVELS
from tui.state import load_section, save_section

FIELDS = (  # (input id, label, RunConfig field, Input type)
    ("epochs", "epochs", "epochs", "integer"),
    ("image-size", "image size", "image_size", "integer"),
    ("batch-size", "batch size", "batch_size", "integer"),
    ("lr", "learning rate", "lr", "number"),
    ("nproc", "processes", "nproc", "integer"),  # data-parallel: GPUs it takes
)
STUDY_FIELDS = (  # (input id, placeholder): a study's grid, its seeds and its name
    ("sweep", "lr=1e-3,1e-4; dropout=0,0.5"),
    ("seeds", "1"),
    ("study", "name (blank: from the time)"),
)
FOLDER = "imagefolder:"  # the data set Select's entry for a path typed in the folder field
STATE_SECTION = "new_job"


@dataclass(frozen=True)
class JobRequest:
    """What the dialog hands back: a validated config and its priority; for a study, all its
    configs (`config` is the first)."""

    config: Any  # lab.config.RunConfig
    priority: int
    study: tuple[Any, ...] = ()  # a study's configs, in grid order; () for one job
    generated: bool = False  # the study's name was made from the time (none was typed)


@dataclass(frozen=True)
class JobStart:
    """What the dialog's fields start from: a run's config to clone (`source` names it), or
    the values last submitted (`remembered`). Values are as typed: strings, "" for blank."""

    level: int = 1
    dataset: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # (input id, text)
    extra: tuple[tuple[str, Any], ...] = ()  # fields the form has no input for (a clone's)
    source: str | None = None

    @classmethod
    def remembered(cls, level: int = 1) -> JobStart:
        saved = load_section(STATE_SECTION)
        ids = {i for i, *_ in FIELDS} | {"priority"}
        values = tuple((k, v) for k, v in saved.get("values", {}).items()
                       if k in ids and isinstance(v, str)) \
            if isinstance(saved.get("values"), dict) else ()
        saved_level = saved.get("level")
        dataset = saved.get("dataset")
        return cls(level=saved_level if saved_level in LEVELS else level,
                   dataset=dataset if isinstance(dataset, str) else None, values=values)

    @classmethod
    def clone(cls, config: dict[str, Any], source: str) -> JobStart:
        """Every field of a run's config: the form's fields in it, the rest kept as they were
        (`extra`), so the clone is that run again until a field is changed."""
        level = config.get("level")
        preset = LEVELS[level].config.to_dict() if level in LEVELS else {}
        shown = {field: input_id for input_id, _l, field, _k in FIELDS}
        values = tuple((shown[k], _text(v)) for k, v in config.items() if k in shown)
        extra = tuple((k, v) for k, v in config.items()
                      if k not in shown and k not in ("level", "dataset") and k in preset
                      and v != preset[k] and not (isinstance(v, list) and tuple(v) == preset[k])
                      and not (k == "device" and str(v).startswith("cuda:")))  # its worker's
        return cls(level=level if level in LEVELS else 1, dataset=config.get("dataset"),
                   values=values, extra=extra, source=source)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class NewJobScreen(ModalScreen[JobRequest | None]):
    """Fields for level, epochs, image size, batch size, lr, data set (or an image folder),
    processes (data-parallel, one GPU each), priority, and for a study a sweep, seeds and
    its name."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, data_dir: Path, start: JobStart | None = None) -> None:
        super().__init__()
        from lab.queue.checks import dataset_choices

        self._data_dir = Path(data_dir)
        self._start = start or JobStart()
        self._level = self._start.level if self._start.level in LEVELS else 1
        self._choices = dataset_choices(self._data_dir)

    def compose(self) -> ComposeResult:
        values = dict(self._start.values)
        dataset, folder = self._initial_dataset()
        with Vertical(id="dialog"):
            title = Text("New job", style="bold")
            if self._start.source:
                title.append(f" like {self._start.source}", style="")
            yield Static(title, id="dialog-title")
            with Grid(id="job-form"):
                yield Label("level")
                yield Select([(f"Level {n}: {lv.title}", n) for n, lv in LEVELS.items()],
                             value=self._level, allow_blank=False, compact=True, id="level")
                for input_id, label, _field, kind in FIELDS[:4]:
                    yield from self._field(input_id, label, kind, values)
                yield Label("dataset")
                yield Select(self._dataset_options(dataset), value=dataset, allow_blank=False,
                             compact=True, id="dataset")
                yield Label("image folder")
                yield Input(folder, compact=True, id="folder", placeholder="PATH (train/<class>/…)",
                            disabled=dataset != FOLDER)
                for input_id, label, _field, kind in FIELDS[4:]:
                    yield from self._field(input_id, label, kind, values)
                yield Label("priority")
                yield Input(values.get("priority", ""), type="integer", compact=True,
                            id="priority", placeholder="0")
                placeholders = dict(STUDY_FIELDS)
                yield Label("sweep")
                yield Input(compact=True, id="sweep", placeholder=placeholders["sweep"])
                yield Label("seeds · study")
                with Horizontal(id="study-row"):
                    yield Input(type="integer", compact=True, id="seeds",
                                placeholder=placeholders["seeds"])
                    yield Input(compact=True, id="study", placeholder=placeholders["study"])
            yield Static(id="job-error")
            hint = "blank: the preset · enter/ctrl+s submits · esc cancels"
            if self._start.extra:
                kept = ", ".join(f"{k}={_text(v)}" for k, v in self._start.extra)
                hint = f"also as that run: {kept}\n{hint}"
            yield Static(Text(hint, style="dim"), id="job-hint")
            with Horizontal(id="dialog-buttons"):
                yield Button("Submit", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    @staticmethod
    def _field(input_id: str, label: str, kind: str, values: dict[str, str]) -> ComposeResult:
        yield Label(label)
        yield Input(values.get(input_id, ""), type=kind, compact=True,  # type: ignore[arg-type]
                    id=input_id)

    def _initial_dataset(self) -> tuple[str, str]:
        """(the Select's value, the folder field's text): the start's data set when a worker
        here has it (or any other named set, shown as it is: submitting says what is
        missing), else the level's preset's if cached, else digits."""
        wanted = self._start.dataset
        if wanted and wanted.startswith(FOLDER):
            return FOLDER, wanted.removeprefix(FOLDER)
        if wanted:
            return wanted, ""
        preset = LEVELS[self._level].config.dataset
        return (preset if preset in self._choices else "digits"), ""

    def _dataset_options(self, current: str) -> list[tuple[str, str]]:
        names = list(self._choices)
        if current not in names and current != FOLDER:
            names.append(current)
        options = [(n if n in self._choices else f"{n} (not here)", n) for n in names]
        return [*options, ("image folder…", FOLDER)]

    def on_mount(self) -> None:
        self._placeholders()
        self.query_one("#level", Select).focus()

    def _placeholders(self) -> None:
        preset = LEVELS[self._level].config
        for input_id, _label, field, _kind in FIELDS:
            self.query_one(f"#{input_id}", Input).placeholder = _text(getattr(preset, field))

    @on(Select.Changed, "#level")
    def _level_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self._level = event.value
            self._placeholders()
            self._show_error("")

    @on(Select.Changed, "#dataset")
    def _dataset_changed(self, event: Select.Changed) -> None:
        self.query_one("#folder", Input).disabled = event.value != FOLDER
        self._show_error("")

    @on(Input.Changed)
    def _edited(self) -> None:
        self._show_error("")

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            request = self.request()
        except LabError as exc:
            self._show_error(str(exc))
            return
        self._remember()
        self.dismiss(request)

    def _typed(self) -> dict[str, str]:
        ids = [i for i, *_ in FIELDS] + ["priority"]
        return {i: self.query_one(f"#{i}", Input).value.strip() for i in ids}

    def _dataset(self) -> str:
        from lab.errors import ConfigError

        chosen = str(self.query_one("#dataset", Select).value)
        if chosen != FOLDER:
            return chosen
        path = self.query_one("#folder", Input).value.strip()
        if not path:
            raise ConfigError("image folder: type the folder's path (train/<class>/…)")
        return FOLDER + path

    def _remember(self) -> None:
        """The values just submitted, for the next time the dialog opens (not a clone's
        extras: those belong to the run it copied)."""
        save_section(STATE_SECTION, {"level": self._level, "dataset": self._dataset(),
                                           "values": self._typed()})

    def request(self) -> JobRequest:
        """Validate the form: the CLI's own checks, data set and weights included; raises
        ConfigError (or the check's error) with one line."""
        from lab.errors import ConfigError
        from tui.jobs import build_job_config, build_study_configs

        typed = self._typed()
        options: dict[str, Any] = dict(self._start.extra)
        for input_id, _label, field, kind in FIELDS:
            raw = typed[input_id]
            if not raw:
                continue
            try:
                options[field] = int(raw) if kind == "integer" else float(raw)
            except ValueError:
                raise ConfigError(f"{field}={raw!r}: expected a "
                                  f"{'whole number' if kind == 'integer' else 'number'}") \
                    from None
        options["dataset"] = self._dataset()
        raw_priority = typed["priority"] or "0"
        try:
            priority = int(raw_priority)
        except ValueError:
            raise ConfigError(f"priority={raw_priority!r}: expected a whole number") from None
        from lab.queue import MAX_PRIORITY

        if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise ConfigError(f"priority={priority}: must be between {-MAX_PRIORITY} and "
                              f"{MAX_PRIORITY}")
        grid = {i: self.query_one(f"#{i}", Input).value.strip() for i, *_ in STUDY_FIELDS}
        if not any(grid.values()):
            return JobRequest(build_job_config(self._level, options, self._data_dir), priority)
        try:
            seeds = int(grid["seeds"] or "1")
        except ValueError:
            raise ConfigError(f"seeds={grid['seeds']!r}: expected a whole number") from None
        configs = build_study_configs(self._level, options, self._data_dir, grid["sweep"],
                                      seeds, grid["study"])
        return JobRequest(configs[0], priority, study=tuple(configs),
                          generated=not grid["study"])

    def _show_error(self, message: str) -> None:
        error = self.query_one("#job-error", Static)
        error.update(Text(f"✗ {message}", style="bold red") if message else "")
        error.display = bool(message)


"""The main screen: the jobs-and-runs list beside the selected row's tabs.

Reading records and talking to the queue happen in thread workers that post messages; the
handlers here hand the results to widgets. Timers drive the refresh: the list every
`refresh_s`, the selected run's files every `poll_s` (a stat of a few files, so a new line in
`metrics.jsonl` reaches the Curves tab within a second), the devices with the list (every 2 s
by default, never more often: each sample is a point of the GPU sparklines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from tui.detail import RunDetail, load_detail
from tui.device import DeviceStat
from tui.messages import (
    ActionDone,
    DetailLoaded,
    DevicesSampled,
    ListReady,
    OverlayLoaded,
    ReadProblem,
    RowsLoaded,
)
from tui.model import SORTS, Row, RowSource, read_events, run_stamp, sort_rows
from tui.screens.confirm import ConfirmScreen
from tui.screens.gradcam_dialog import GalleryRequest, GradcamDialog
from tui.screens.new_job import JobRequest, JobStart, NewJobScreen
from tui.screens.predict import PredictDialog, PredictScreen
from tui.widgets.keybar import KeyBar
from tui.widgets.run_list import RunList
from tui.widgets.run_tabs import TABS, RunTabs
from tui.widgets.topbar import TopBar


class MainScreen(Screen):
    BINDINGS = [
        Binding("n", "new_job", "new", tooltip="new job: level, epochs, size, batch, lr, data, "
                "processes, priority; submitted to the queue"),
        Binding("N", "clone_job", "clone", tooltip="new job like the selected row: its "
                "config in the new-job dialog, to submit as it is or changed"),
        Binding("c", "cancel_job", "cancel", tooltip="cancel the selected job (a running one "
                "stops at its next batch; its run is kept)"),
        Binding("r", "retry_job", "retry", tooltip="queue the selected failed, cancelled or "
                "interrupted job again (it resumes from its checkpoint)"),
        Binding("m", "compare", "compare", tooltip="compare screen: the marked runs, or the "
                "latest finished run of each level"),
        Binding("slash", "filter", "filter", key_display="/",
                tooltip="filter the list by words (name, state, data, l1, #12 ...)"),
        Binding("s", "sort", "sort", tooltip="sort the list: newest, state, accuracy, level, "
                "name"),
        Binding("g", "gradcam", "grad-cam", tooltip="make a Grad-CAM gallery of the selected "
                "finished run"),
        Binding("p", "predict", "predict", show=False, tooltip="ask the selected finished "
                "run about an image, a folder or an archive: answers and heatmaps"),
        Binding("f", "full_view", "full view", show=False, tooltip="the Grad-CAM tab's "
                "picture full screen (← → the others, escape back)"),
        Binding("w", "start_worker", "worker", tooltip="start a detached worker (it keeps "
                "running after the console quits)"),
        Binding("l", "log_view", "log", show=False, tooltip="the selected row's log, full "
                "screen: follows it as it grows (F), search (/ n N), wrap (w)"),
        Binding("escape", "clear_filter", "clear filter", show=False,
                tooltip="clear the filter"),
        Binding("z", "fold_all", "fold", tooltip="fold every study to its header row, or "
                "unfold them all when all are folded (space or enter folds one)"),
        *[Binding(str(i), f"tab('{pane}')", "tabs" if i == 1 else f"{title} tab",
                  show=i == 1, key_display="1-7" if i == 1 else None)
          for i, (pane, title) in enumerate(TABS, start=1)],
    ]

    def __init__(self, runs_dir: Path, data_dir: Path, *, runs_label: str,
                 device_probe: Callable[[], list[DeviceStat]],
                 source: RowSource | None = None, clock: Callable[[], float] = time.time,
                 refresh_s: float = 2.0, poll_s: float = 0.5, prefs: dict | None = None,
                 remember: Callable[..., None] | None = None) -> None:
        """Everything the screen reads comes in here (the app passes it down); what it has to
        tell the app goes up as a message (`ListReady`). `prefs` are the last session's marks
        (run ids) and sort; `remember(**values)` keeps changed ones for the next."""
        super().__init__()
        self.prefs = prefs or {}
        self._remember = remember or (lambda **_values: None)
        self.runs_dir, self.data_dir = Path(runs_dir), Path(data_dir)
        self.runs_label = runs_label
        self.device_probe = device_probe
        self.clock = clock
        self.refresh_s, self.poll_s = refresh_s, poll_s
        self.row: Row | None = None
        self.detail: RunDetail | None = None
        self.loaded_once = False
        self._rate_obs: dict[str, tuple[float, int]] = {}  # run id -> first (time, step) seen
        self._source = source if source is not None else RowSource(self.runs_dir)
        self._busy: dict[str, Worker] = {}  # the latest rows / detail worker
        self._has_studies = False  # whether the list has a study (z shows then)

    def compose(self) -> ComposeResult:
        yield TopBar(self.runs_label, id="topbar")
        with Horizontal(id="body"):
            sort = self.prefs.get("sort")
            folded = self.prefs.get("collapsed")
            folded = frozenset(f for f in folded if isinstance(f, str)) \
                if isinstance(folded, list) else frozenset()
            yield RunList(clock=self.clock, sort=sort if sort in SORTS else "newest",
                          collapsed=folded, id="runs")
            yield RunTabs(id="run-tabs")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one("#table").focus()
        self.refresh_rows()
        self.set_interval(self.refresh_s, self.refresh_rows)
        self.set_interval(self.poll_s, self.poll_selected)
        self.sample_devices()
        self.set_interval(max(2.0, self.refresh_s), self.sample_devices)  # with the list

    @property
    def run_list(self) -> RunList:
        return self.query_one(RunList)

    @property
    def tabs(self) -> RunTabs:
        return self.query_one(RunTabs)

    def _in_flight(self, name: str) -> bool:
        """Whether the last `name` worker is still at it: a timer then skips its turn rather
        than cancel it (a read slower than the timer would otherwise never finish)."""
        worker = self._busy.get(name)
        return worker is not None and worker.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def on_read_problem(self, message: ReadProblem) -> None:
        self.notify(message.text, severity="error", timeout=10)

    # ---- the list --------------------------------------------------------------------------
    def refresh_rows(self) -> None:
        if not self._in_flight("rows"):
            self._busy["rows"] = self._read_rows()

    @work(thread=True, exclusive=True, group="rows", exit_on_error=False)
    def _read_rows(self) -> None:
        try:
            snapshot = self._source.load()
        except Exception as exc:  # noqa: BLE001 - say so; the next refresh tries again
            self.post_message(ReadProblem(f"cannot read {self.runs_dir}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(RowsLoaded(snapshot))

    def on_rows_loaded(self, message: RowsLoaded) -> None:
        snap = message.snapshot
        if not self.loaded_once and snap.rows:  # the newest row, whatever the sort
            self.run_list.select(sort_rows(snap.rows, "newest")[0].key)
        self.run_list.rows = snap.rows
        topbar = self.query_one(TopBar)
        topbar.worker_rows = snap.workers
        topbar.problem = snap.queue_error or ""
        self.tabs.hint = self._hint(self.row) if snap.rows else self._empty_hint()
        if self._has_studies != bool(self.run_list.studies):
            self._has_studies = not self._has_studies
            self.refresh_bindings()  # z (fold) shows only where there are studies
        if not self.loaded_once:
            self.loaded_once = True
            self._restore_marks(snap.rows)
            self.post_message(ListReady(len(snap.rows)))
        if self.run_list.marked:
            self.load_overlay(self.run_list.marked_rows())

    def _restore_marks(self, rows: list[Row]) -> None:
        """The last session's marks, by run id; runs that are gone since are ignored."""
        saved = self.prefs.get("marks")
        if isinstance(saved, list):
            ids = {m for m in saved if isinstance(m, str)}
            self.run_list.marked = frozenset(r.key for r in rows if r.run_id in ids)

    def _empty_hint(self) -> Group:
        """What to do in an empty runs directory, where the tabs would show nothing."""
        parts: list = [Text(f"No jobs or runs in {self.runs_label} yet. To begin:")]
        for command, what in (
            ("n", "queue a new job here (w starts a worker to run it)"),
            ("lab demo", "in a shell: trains the three levels on the bundled digits"),
            ("lab data import PATH", "in a shell: brings in CIFAR-10 or an image folder"),
        ):
            parts += [Text(""), Text(command, style="bold"), Padding(Text(what), (0, 0, 0, 2))]
        return Group(*parts)

    def _hint(self, row: Row | None) -> Group | None:
        """A study's header shows the study in place of the tabs (a header has no run)."""
        if row is None or row.progress is None:
            return None
        p = row.progress
        counts = ", ".join(f"{n} {bucket}" for bucket, n in p.counts.items() if n)
        lines = [Text(f"Study {row.name}", style="bold"),
                 Text(f"{p.total} jobs and runs: {counts}")]
        if p.mean is not None:
            lines.append(Text(f"test accuracy of the {p.counts['done']} finished: mean "
                              f"{100 * p.mean:.2f}%, best {100 * (p.best or 0):.2f}%"))
        verb = "unfolds" if row.study in self.run_list.collapsed else "folds"
        lines += [Text(""), Text(f"space or enter {verb} it, z folds or unfolds every study. "
                                 "Mark its runs (space) to see their mean curve with a "
                                 "min–max band (tab 7, m compare).", style="dim")]
        return Group(*lines)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "fold_all":
            return self._has_studies  # hidden from the key bar until a study exists
        return True

    @on(RunList.Folded)
    def _folded(self, message: RunList.Folded) -> None:
        if self.loaded_once:
            self._remember(collapsed=sorted(message.collapsed))

    @on(RunList.Highlighted)
    def _highlighted(self, message: RunList.Highlighted) -> None:
        prev, row = self.row, message.row
        self.row = row
        if any(r is not None and r.is_header for r in (prev, row)):
            self.tabs.hint = self._hint(row)
        if row is None or row.is_header:
            self.detail = None
            self.tabs.detail = None
            return
        if prev is None or (prev.key, prev.run_id, prev.state) != (row.key, row.run_id,
                                                                   row.state):
            self.load_detail(row)  # another row: cancel (ignore) a read of the previous one

    @on(RunList.MarksChanged)
    def _marks(self, message: RunList.MarksChanged) -> None:
        self.load_overlay(message.rows)
        if self.loaded_once:  # not the empty marks before the last session's are restored
            self._remember(marks=sorted(r.run_id for r in message.rows if r.run_id))

    # ---- the selected run ------------------------------------------------------------------
    def load_detail(self, row: Row) -> None:
        self._busy["detail"] = self._read_detail(row)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _read_detail(self, row: Row) -> None:
        try:
            detail = load_detail(self.runs_dir, row)
        except Exception as exc:  # noqa: BLE001 - load_detail collects per-file errors itself
            self.post_message(ReadProblem(f"cannot read {row.name}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(DetailLoaded(detail))

    def poll_selected(self) -> None:
        """Cheap: a stat of the selected run's files; a change reloads its detail."""
        row, detail = self.row, self.detail
        if row is None or row.run_id is None or detail is None or detail.key != row.key \
                or self._in_flight("detail"):
            return
        job_log = self.runs_dir / "jobs" / f"{row.job_id}.log" if row.job_id else None
        if run_stamp(self.runs_dir / row.run_id, job_log) != detail.stamp:
            self.load_detail(row)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        detail = message.detail
        if self.row is None or detail.key != self.row.key:
            return  # the cursor moved on meanwhile
        self.detail = detail
        self.tabs.detail = detail
        self.tabs.curves.rate = self._rate(detail)

    def _rate(self, detail: RunDetail) -> tuple[float, float] | None:
        """Steps per second seen since the console first saw this run move, and its batch."""
        if detail.run_id is None or detail.state not in ("running", "cancelling"):
            return None
        steps = [int(e.get("step", 0)) for e in detail.events if e.get("event") == "step"]
        if not steps:
            return None
        now, step = time.monotonic(), max(steps)
        first = self._rate_obs.setdefault(detail.run_id, (now, step))
        if now - first[0] < 1.0 or step <= first[1]:
            return None
        batch = float((detail.config or {}).get("batch_size") or 0)
        return (step - first[1]) / (now - first[0]), batch

    @work(thread=True, exclusive=True, group="overlay", exit_on_error=False)
    def load_overlay(self, rows: list[Row]) -> None:
        from lab.views.bands import curve_groups, read_configs

        series = {}
        for row in rows:
            if row.run_id is not None:
                events, _ = read_events(self.runs_dir / row.run_id / "metrics.jsonl")
                series[row.label] = [e for e in events if e.get("event") == "epoch"]
            else:
                series[row.label] = []
        studied = {r.label: r.run_id for r in rows if r.study}  # only these can form groups
        groups = curve_groups(read_configs(self.runs_dir, studied)) if studied else {}
        if not get_current_worker().is_cancelled:
            self.post_message(OverlayLoaded(series, groups))

    def on_overlay_loaded(self, message: OverlayLoaded) -> None:
        self.tabs.overlay.show(message.series, message.groups)

    # ---- devices ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="devices", exit_on_error=False)
    def sample_devices(self) -> None:
        stats = self.device_probe()
        if not get_current_worker().is_cancelled:
            self.post_message(DevicesSampled(stats))

    def on_devices_sampled(self, message: DevicesSampled) -> None:
        self.query_one(TopBar).devices = message.stats

    # ---- actions ---------------------------------------------------------------------------
    def action_tab(self, pane: str) -> None:
        self.tabs.active = pane

    def action_fold_all(self) -> None:
        self.run_list.fold_all()

    def action_filter(self) -> None:
        self.run_list.open_filter()

    def action_clear_filter(self) -> None:
        self.run_list.clear_filter()

    def action_sort(self) -> None:
        self.run_list.cycle_sort()
        self._remember(sort=self.run_list.sort)

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen  # its charts load plotext: not at start

        refs = [r.run_id for r in self.run_list.marked_rows() if r.run_id]
        self.app.push_screen(CompareScreen(self.runs_dir, refs or None))

    def action_log_view(self) -> None:
        from tui.screens.log_view import LogScreen, log_source

        source = log_source(self.runs_dir, self.row)
        if source is None:
            self.notify("nothing selected: choose a job or a run first", severity="warning")
            return
        self.app.push_screen(LogScreen(source))

    def action_new_job(self) -> None:
        level = self.row.level if self.row and self.row.level else 1
        self.app.push_screen(NewJobScreen(self.data_dir, JobStart.remembered(level)),
                             self._submit)

    def action_clone_job(self) -> None:
        row, detail = self.row, self.detail
        config = detail.config if row and detail and detail.key == row.key else None
        if row is None or not config:
            self.notify("select a run or job to clone" if row is None or row.is_header else
                        f"{row.name} has no readable config to clone", severity="warning")
            return
        if config.get("level") not in (1, 2, 3):
            source = f"runs/{row.run_id}/config.json" if row.run_id else "its config"
            self.notify(f"{row.name} is a custom run: queue it again with "
                        f"lab submit --config {source}", severity="warning", timeout=8)
            return
        self.app.push_screen(NewJobScreen(self.data_dir, JobStart.clone(config, row.name)),
                             self._submit)

    def _submit(self, request: JobRequest | None) -> None:
        if request is not None:
            self.submit_job(request)

    @work(thread=True, group="queue", exit_on_error=False)
    def submit_job(self, request: JobRequest) -> None:
        import tui.jobs as jobs

        def call() -> Message:
            if request.study:
                done, alive = jobs.submit_study(self.runs_dir, list(request.study),
                                                request.priority, request.generated)
                return ActionDone(done, offer_worker=not alive)
            job_id, alive = jobs.submit(self.runs_dir, request.config, request.priority)
            return ActionDone(f"job {job_id} queued: {request.config.label} on "
                             f"{request.config.dataset}", offer_worker=not alive)

        self._report(call)

    def action_cancel_job(self) -> None:
        """Asks first (default no): a running job's epoch in progress is lost."""
        row = self._job_row("cancel")
        if row is None:
            return
        what = f"job {row.name} ({row.state})"
        effect = ("It stops at its next batch; its run and checkpoint are kept."
                  if row.state in ("running", "cancelling") else "It will not run; "
                  "r queues it again.")
        self.app.push_screen(
            ConfirmScreen(f"Cancel {what}?\n{effect}", yes="Cancel job", no="Keep it"),
            lambda yes: self._queue_call("cancel", row.job_id) if yes else None)

    def action_retry_job(self) -> None:
        row = self._job_row("retry")
        if row is not None:
            self._queue_call("retry", row.job_id)

    def _job_row(self, verb: str) -> Row | None:
        row = self.row
        if row is not None and row.is_header:
            self.notify(f"{row.name} is a study: select one of its jobs to {verb} it",
                        severity="warning")
            return None
        if row is None or row.job_id is None:
            self.notify(f"only jobs can be {verb}led: this run was not started through the "
                        "queue" if row else "nothing selected", severity="warning")
            return None
        return row

    @work(thread=True, group="queue", exit_on_error=False)
    def _queue_call(self, verb: str, job_id: Any) -> None:
        import tui.jobs as jobs

        self._report(lambda: ActionDone(getattr(jobs, verb)(self.runs_dir, job_id)))

    def action_start_worker(self) -> None:
        alive = self.query_one(TopBar).worker_rows
        if alive:  # a second `--gpus all` worker would put two jobs on each GPU
            pids = ", ".join(str(w["pid"]) for w in alive)
            self.notify(f"a worker is already running (pid {pids}); for more, start them "
                        "by hand on other GPUs: lab worker --gpus N --detach",
                        severity="warning", timeout=8)
            return
        self.notify("starting a detached worker…")
        self.start_worker()

    @work(thread=True, exclusive=True, group="worker-start", exit_on_error=False)
    def start_worker(self) -> None:
        import tui.jobs as jobs

        self._report(lambda: ActionDone(jobs.start_worker(self.runs_dir, self.data_dir)))

    def _report(self, call: Any) -> None:
        """Run a blocking call (in a worker thread) and post its outcome as one line."""
        try:
            message = call()
        except Exception as exc:  # noqa: BLE001 - every failure is a line, never a crash
            message = ActionDone(str(exc), ok=False)
        self.post_message(message)

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "error",
                    timeout=6 if message.ok else 10)
        self.query_one(RunTabs).gradcam.busy = ""
        self.refresh_rows()
        if self.row is not None:
            self.load_detail(self.row)
        if message.offer_worker:
            self.app.push_screen(
                ConfirmScreen("No worker is running, so the job will wait.\n"
                              "Start a detached worker now? It keeps running after you quit.",
                              yes="Start worker", no="Not now", default=True),
                lambda yes: self.action_start_worker() if yes else None)

    def _finished_run(self, what: str) -> str | None:
        """The selected run's id when it is done; else a warning naming `what` needs one."""
        row = self.row
        if row is None or row.run_id is None or row.state != "done":
            self.notify(f"{what} needs a finished run: select one that is done",
                        severity="warning")
            return None
        return row.run_id

    def action_gradcam(self) -> None:
        run_id = self._finished_run("Grad-CAM")
        if run_id is not None:
            self.tabs.active = "gradcam"
            self.app.push_screen(GradcamDialog(run_id),
                                 lambda req: self._gallery_asked(run_id, req))

    def action_predict(self) -> None:
        run_id = self._finished_run("Predict")
        if run_id is not None:
            self.app.push_screen(PredictDialog(run_id),
                                 lambda path: self._predict_asked(run_id, path))

    def _predict_asked(self, run_id: str, path: Path | None) -> None:
        if path is not None:
            self.app.push_screen(PredictScreen(self.runs_dir, self.data_dir, run_id, path))

    def action_full_view(self) -> None:
        if self.tabs.active == "gradcam":
            self.tabs.gradcam.action_full()

    def _gallery_asked(self, run_id: str | None, request: GalleryRequest | None) -> None:
        if request is None or run_id is None:
            return
        self.tabs.gradcam.busy = f"making a {request.method} gallery ({request.n} per class)…"
        self.make_gallery(run_id, request)

    @work(thread=True, exclusive=True, group="gradcam", exit_on_error=False)
    def make_gallery(self, run_id: str, request: GalleryRequest) -> None:
        def call() -> Message:
            from lab.explain.gallery import explain_run
            from lab.runs import RunDir

            run = RunDir(Path(self.runs_dir) / run_id)
            gallery = explain_run(run, self.data_dir, n=request.n, method=request.method,
                                  wrong_only=request.wrong_only)
            return ActionDone(f"gallery {gallery['name']}: {len(gallery['items'])} images")

        self._report(call)

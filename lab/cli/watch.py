"""`lab watch RUN|JOB`: follow a run from any terminal while its worker trains it elsewhere.

Everything shown comes from the records on disk (the queue row and `metrics.jsonl`), re-read
when the file grows, so watching costs the job nothing and Ctrl-C here leaves it running. On a
terminal: a live progress bar and the epoch curves; in a pipe or a log: one line per epoch and
the curves at the end. The exit code says how the run ended (0 only when it is done).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lab.cli.common import RunsDirOpt, color_enabled, err, out, runs_dir
from lab.runs import State

SLURM_EVERY_S = 5.0  # a Slurm job's state is asked of squeue this often while watching


@dataclass
class Target:
    """What is watched: a job (which may get a run, lose its worker, be resumed) or a run."""

    runs: Path
    job_id: int | None = None
    run_id: str | None = None
    header: str = ""
    state: str = State.QUEUED
    error: str | None = None
    finished: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    _size: int = -1
    _slurm_next: float = 0.0  # when to ask Slurm again about a Slurm job

    def refresh(self, queue: Any) -> None:
        from lab.queue import FINISHED
        from lab.runs import RUN_FINISHED, RunDir, State

        if self.job_id is not None:
            job = queue.get(self.job_id)
            if job.backend == "slurm" and job.state not in FINISHED \
                    and time.monotonic() >= self._slurm_next:  # one squeue every few seconds
                from lab.queue.actions import refresh

                job = refresh(queue, [job], self.runs)[0][0]
                self._slurm_next = time.monotonic() + SLURM_EVERY_S
            self.run_id = job.run_id
            self.state, self.error = job.display_state, job.error
            self.finished = job.state in FINISHED
            where = f" on {job.gpu}" if job.gpu and job.state == State.RUNNING else ""
            self.header = (f"job {job.id} · {job.label} · {self.state}{where} · attempt "
                           f"{job.attempts}" + (f" · run {job.run_id}" if job.run_id else ""))
        if self.run_id is None:
            return
        run = RunDir(self.runs / self.run_id)
        if self.job_id is None:
            self.state = run.live_state()
            self.error = run.status().get("error")
            self.finished = self.state in RUN_FINISHED
            self.header = f"run {run.id} · {self.state}"
        try:
            size = run.metrics_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size != self._size:  # re-read only when metrics.jsonl changed
            self._size, self.events = size, run.events()


def watch(
    ref: Annotated[str, typer.Argument(
        metavar="RUN|JOB", help="A job id (12 or #12), or a run id, prefix or 'latest'.")],
    interval: Annotated[float, typer.Option(help="Seconds between looks at the records.",
                                            min=0.05)] = 0.5,
    runs: RunsDirOpt = None,
) -> None:
    """Live progress and curves of a job or run; Ctrl-C stops watching, not the job."""
    from lab.queue import JobQueue

    path = runs_dir(runs)
    queue = JobQueue.open(path, create=False)
    try:
        target = _resolve(ref, path, queue)
        live = out.is_terminal
        try:
            if live:
                _follow_live(target, queue, interval)
            else:
                _follow_lines(target, queue, interval)
        except KeyboardInterrupt:
            what = f"job {target.job_id}" if target.job_id is not None else f"run {target.run_id}"
            err.print(f"stopped watching; {what} goes on (`lab watch {ref}` to look again)")
            return
    finally:
        if queue is not None:
            queue.close()
    _finish(target)


def _resolve(ref: str, runs: Path, queue: Any) -> Target:
    from lab.errors import NotFoundError
    from lab.queue import parse_job_id
    from lab.runs import resolve_run

    text = ref.strip()
    if text.startswith("#") or text.isdigit():
        job_id = parse_job_id(text)
        if queue is not None:
            try:
                queue.get(job_id)
                return Target(runs, job_id=job_id)
            except NotFoundError:
                if text.startswith("#"):
                    raise
        elif text.startswith("#"):
            raise NotFoundError(f"no job {job_id}: {runs} has no queue yet")
    run = resolve_run(runs, text)
    job = run.status().get("job")
    if isinstance(job, int) and queue is not None:  # a queued job's run: follow the job
        return Target(runs, job_id=job, run_id=run.id)
    return Target(runs, run_id=run.id)


def _follow_live(target: Target, queue: Any, interval: float) -> None:
    from rich.live import Live

    target.refresh(queue)
    with Live(_view(target), console=out, auto_refresh=False) as live:
        while not target.finished:
            time.sleep(interval)
            target.refresh(queue)
            live.update(_view(target), refresh=True)


def _follow_lines(target: Target, queue: Any, interval: float) -> None:
    seen, last_header = 0, ""
    while True:
        target.refresh(queue)
        if target.header != last_header:
            out.print(target.header, markup=False, soft_wrap=True)
            last_header = target.header
        epochs = [e for e in target.events if e.get("event") == "epoch"]
        for e in epochs[seen:]:
            out.print(_epoch_line(e, _total_epochs(target.events)), markup=False,
                      soft_wrap=True)
        seen = len(epochs)
        if target.finished:
            chart = _chart(target.events, color=False, width=max(40, min(out.width, 140)))
            out.print(chart, markup=False, soft_wrap=True)
            return
        time.sleep(interval)


def _finish(target: Target) -> None:
    from lab.errors import RunFailed

    tests = [e for e in target.events if e.get("event") == "test"]
    name = f"job {target.job_id}" if target.job_id is not None else f"run {target.run_id}"
    if target.state == State.DONE:
        acc = f": test accuracy {100 * tests[-1]['test_acc']:.2f}%" if tests else ""
        out.print(f"{name} done{acc} (details: lab show {target.run_id})")
        return
    raise RunFailed(f"{name} {target.state}" + (f": {target.error}" if target.error else ""))


# ---- rendering -------------------------------------------------------------------------------
def _total_epochs(events: list[dict[str, Any]]) -> int:
    starts = [e for e in events if e.get("event") == "start"]
    return int(starts[0].get("epochs", 0)) if starts else 0


def _epoch_line(e: dict[str, Any], total: int) -> str:
    return (f"epoch {e['epoch']}/{total or '?'}  train loss {e['train_loss']:.4f} "
            f"acc {100 * e['train_acc']:.2f}%  val loss {e['val_loss']:.4f} "
            f"acc {100 * e['val_acc']:.2f}%  {e.get('images_per_s', 0):,.0f} img/s")


def progress(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a run stands, from its events alone: epoch, step, fraction, loss, speed, ETA."""
    starts = [e for e in events if e.get("event") == "start"]
    total = int(starts[0].get("epochs", 0)) if starts else 0
    per_epoch = int(starts[0].get("steps_per_epoch", 0)) if starts else 0
    steps = [e for e in events if e.get("event") in ("step", "resume", "epoch")]
    epochs = [e for e in events if e.get("event") == "epoch"]
    step = int(steps[-1].get("step", 0)) if steps else 0
    losses = [e for e in events if e.get("event") == "step"]
    fraction = step / (total * per_epoch) if total and per_epoch else 0.0
    eta = None
    if epochs and per_epoch:
        mean = sum(float(e.get("seconds", 0)) for e in epochs) / len(epochs)
        eta = max(0.0, (total * per_epoch - step) / per_epoch * mean)
    current = min(total, step // per_epoch + 1) if per_epoch else len(epochs)
    return {"epoch": current, "epochs": total, "step": step, "fraction": min(1.0, fraction),
            "loss": losses[-1].get("loss") if losses else None,
            "images_per_s": epochs[-1].get("images_per_s") if epochs else None, "eta_s": eta}


def _view(target: Target) -> Group:
    p = progress(target.events)
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 140))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(f"epoch {p['epoch']}/{p['epochs'] or '?'}",
                ProgressBar(total=1.0, completed=p["fraction"], width=max(10, width // 3)),
                f"{100 * p['fraction']:.0f}%",
                f"loss {p['loss']:.4f}" if p["loss"] is not None else "",
                f"{p['images_per_s']:,.0f} img/s" if p["images_per_s"] else "",
                f"ETA {_clock(p['eta_s'])}" if p["eta_s"] is not None else "")
    parts: list[Any] = [Text(target.header, style="bold"), bar]
    if target.run_id is None:
        waiting = ("waiting for a worker (`lab worker --detach` starts one)"
                   if target.state in (State.QUEUED, State.INTERRUPTED) else "starting")
        parts.append(Text(waiting, style="dim"))
    else:
        chart = _chart(target.events, color=color_enabled(), width=width)
        parts.append(Text.from_ansi(chart) if color_enabled() else Text(chart))
    if target.error and target.state not in (State.RUNNING, State.DONE):
        parts.append(Text(target.error, style="red"))
    return Group(*parts)


def _chart(events: list[dict[str, Any]], color: bool, width: int = 100) -> str:
    from lab.views.charts import epoch_chart

    return epoch_chart([e for e in events if e.get("event") == "epoch"], width=width, height=16,
                       color=color)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"

"""One row in detail: every record of its run (and its job) read in one go, off the UI thread,
with unreadable parts collected as errors rather than raised; and where a running run stands."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runs import RunDir
from lab.views.states import weakest_classes
from tui.model import Row, read_events, run_stamp

LOG_TAIL_LINES = 300


@dataclass
class RunDetail:
    """Everything the tabs show for one row, read in one go off the UI thread."""

    key: str
    run_id: str | None = None
    job: dict[str, Any] | None = None
    state: str = ""
    config: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    system: list[dict[str, Any]] = field(default_factory=list)  # system.jsonl's samples
    result: dict[str, Any] | None = None
    galleries: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    weakest: list[str] = field(default_factory=list)
    stamp: tuple = ()

    def epochs(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "epoch"]

    def steps(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "step"]


def load_detail(runs_dir: Path, row: Row) -> RunDetail:
    """Read every record of the row's run (and its job's log); errors are collected, not raised."""
    runs_dir = Path(runs_dir)
    job_log = _job_log(runs_dir, row.job_id)
    detail = RunDetail(key=row.key, run_id=row.run_id, state=row.state)
    if row.job_id is not None:
        detail.job = _job_dict(runs_dir, row.job_id)
        if detail.job is not None and row.slurm_state:  # from the list's squeue call
            detail.job["slurm_state"] = row.slurm_state
        detail.config = (detail.job or {}).get("config")  # until the run has its own config
    detail.log = _tail(job_log) if job_log else []
    if row.run_id is None:
        return detail
    run = RunDir(runs_dir / row.run_id)
    detail.stamp = run_stamp(run.path, job_log)
    # the readers of lab.runs check each record against its schema: a corrupt one is an
    # error on this run's tabs, and what the tabs get is always of the right shape
    for name, read in (("config.json", lambda: run.config().to_dict()),
                       ("status.json", run.status),
                       ("result.json", run.result)):
        try:
            value = read()
        except (LabError, OSError) as exc:  # shown on this run only
            detail.errors.append(f"{name}: {exc}")
            continue
        if name == "config.json":
            detail.config = value
        elif name == "status.json":
            detail.status = value
        else:
            detail.result = value
    detail.events, detail.bad_lines = read_events(run.metrics_path)
    detail.system = read_samples(run.path / "system.jsonl")
    if detail.bad_lines:
        detail.errors.append(f"metrics.jsonl: {detail.bad_lines} unreadable line(s) skipped "
                             "(torn or corrupt); the rest is shown")
    detail.galleries, gallery_errors = read_galleries(run.path / "gradcam")
    detail.errors += gallery_errors
    per_class = (detail.result or {}).get("per_class")
    if isinstance(per_class, list):
        detail.weakest = weakest(per_class)
    return detail


def weakest(per_class: list[dict[str, Any]], n: int = 3) -> list[str]:
    """`lab.views.states.weakest_classes` (classes clearly below the rest), none for a
    per-class table whose values are not numbers."""
    try:
        return weakest_classes(per_class, n)
    except (KeyError, TypeError, ValueError):
        return []


def read_galleries(gradcam_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Galleries with their items and absolute PNG paths (only files the index names), and
    what could not be read. Through `lab.explain.index`, which checks each index's shape and
    does not import torch."""
    from lab.explain import index as gallery_index

    try:
        entries = gallery_index.read_galleries(gradcam_dir)
    except (LabError, OSError) as exc:
        return [], [f"gradcam/index.json: {exc}"]
    errors: list[str] = []
    galleries = []
    for entry in entries:
        name = entry["name"]
        folder = gradcam_dir / name
        if not folder.is_dir():
            continue
        try:
            gindex = gallery_index.read_gallery(gradcam_dir, name)
        except (LabError, OSError) as exc:
            errors.append(f"gradcam/{name}/index.json: {exc}")
            continue
        if gindex is None:
            continue
        items = [{**item, "path": folder / item["file"]} for item in gindex["items"]]
        grid = gindex.get("grid")
        galleries.append({"name": name, "method": gindex.get("method", entry.get("method")),
                          "layer": gindex.get("layer"),
                          "layer_size": gindex.get("layer_size"), "items": items,
                          "grid": folder / grid if grid else None})
    return galleries, errors


def _job_log(runs_dir: Path, job_id: int | None) -> Path | None:
    if job_id is None:
        return None
    return runs_dir / "jobs" / f"{job_id}.log"


def _job_dict(runs_dir: Path, job_id: int) -> dict[str, Any] | None:
    try:
        from lab.queue import JobQueue

        queue = JobQueue.open(runs_dir, create=False)
        if queue is None:
            return None
        with queue:
            return queue.get(job_id).to_dict()
    except Exception:  # noqa: BLE001 - the job may be gone; the run still shows
        return None


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()][-lines:]


# ---- progress of a running run ------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    epoch: int
    epochs: int
    fraction: float
    images_per_s: float | None
    eta_s: float | None


def progress(detail: RunDetail, rate: tuple[float, float] | None = None) -> Progress | None:
    """Where a run stands: epoch, share of all steps done, speed and time left.

    `rate` is (steps per second, batch size) measured by the caller from how fast the step
    counter moves; it stands in for speed before the first epoch has reported its own."""
    start = next((e for e in detail.events if e.get("event") == "start"), None)
    config = detail.config or {}
    epochs = int((start or {}).get("epochs") or config.get("epochs") or 0)
    per_epoch = int((start or {}).get("steps_per_epoch") or 0)
    if not epochs:
        return None
    steps = [int(e.get("step", 0)) for e in detail.events if e.get("event") in ("step", "epoch")]
    done = max(steps, default=0)
    finished_epochs = [e for e in detail.events if e.get("event") == "epoch"]
    epoch = max((int(e.get("epoch", 0)) for e in finished_epochs), default=0)
    total = epochs * per_epoch
    fraction = min(1.0, done / total) if total else epoch / epochs
    ips = None
    if finished_epochs and finished_epochs[-1].get("images_per_s"):
        ips = float(finished_epochs[-1]["images_per_s"])
    elif rate is not None and rate[0] > 0:
        ips = rate[0] * rate[1]
    eta = None
    batch = float(config.get("batch_size") or (rate[1] if rate else 0) or 0)
    if ips and batch and total:
        eta = max(0.0, (total - done) * batch / ips)
    return Progress(epoch=min(epoch + 1, epochs) if fraction < 1 else epochs, epochs=epochs,
                    fraction=fraction, images_per_s=ips, eta_s=eta)


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a run's system.jsonl (a torn last line, or none at all: skipped)."""
    import json

    try:
        data = path.read_bytes()
    except OSError:
        return []
    samples = []
    for line in data.split(b"\n"):
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples

"""From `lab submit` to the first point of the run's curve, stage by stage.

    python bench/first_point.py                          # this tree, 3 trials
    python bench/first_point.py --tree ../main --tree .  # two trees, alternated trial by trial

Each trial starts a real worker (`lab worker --gpus cpu`, default poll) on a fresh runs
directory, lets it settle, submits one small job (Level 3 on the bundled digits at 32 px), and
watches from the outside (the queue file, /proc, the run's files), so every tree is measured the
same way whatever its code. Seconds after the submit command was started:

    submit returned   the `lab submit` process exited
    claimed           the job's `started` in the queue (the worker took it)
    process           the job process's start time (/proc/PID/stat)
    run created       the run directory's config.json exists
    start event       metrics.jsonl has its `start` line (data and model are ready)
    first point       metrics.jsonl has its first `step` line (what a curve draws)

`--stages` adds, in a fresh interpreter of each tree, what a cold job process spends on each
part of its set-up (imports, data, model, first step). Nothing is asserted: figures only. The
machine is shared; `uptime` is printed before and after, and trials alternate between trees so
that load falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = ["--level", "3", "--dataset", "digits", "--image-size", "32", "--epochs", "1",
       "--device", "cpu"]
MARKS = ["submit returned", "claimed", "process", "run created", "start event", "first point"]


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _lab(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=tree, env=_env(tree),
                          capture_output=True, text=True, timeout=300)


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def _process_start(pid: int) -> float | None:
    """Wall-clock start of a process, to the clock tick (10 ms)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _job_row(db: Path) -> dict | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return dict(row) if row else None


def _events(run: Path) -> list[str]:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    kinds = []
    for line in lines:
        try:
            kinds.append(json.loads(line).get("event"))
        except ValueError:
            continue
    return kinds


def trial(tree: Path, settle: float, timeout: float = 300.0) -> dict[str, float]:
    """One worker, one job: the stage marks in seconds after the submit started."""
    runs = Path(tempfile.mkdtemp(prefix="first-point-"))
    marks: dict[str, float] = {}
    t_worker = time.time()
    worker = subprocess.Popen(
        [sys.executable, "-m", "lab", "worker", "--gpus", "cpu", "--runs-dir", str(runs)],
        cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        pidfile = runs / "workers" / f"worker-{worker.pid}.pid"
        while not pidfile.exists():
            if worker.poll() is not None or time.time() - t_worker > timeout:
                raise RuntimeError(f"the worker of {tree} did not start")
            time.sleep(0.01)
        marks["worker up"] = time.time() - t_worker
        time.sleep(settle)  # a worker that is already running, as in the issue
        t0 = time.time()
        proc = _lab(tree, "submit", *JOB, "-q", "--runs-dir", str(runs))
        marks["submit returned"] = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"submit failed: {proc.stderr.strip()}")
        db, run = runs / "lab.db", None
        while "first point" not in marks:
            now = time.time() - t0
            if now > timeout:
                raise RuntimeError(f"no first point after {timeout:.0f}s; marks {marks}")
            row = _job_row(db) or {}
            if row.get("started") and "claimed" not in marks:
                marks["claimed"] = row["started"] - t0
            if row.get("child_pid") and "process" not in marks:
                born = _process_start(row["child_pid"])
                if born is not None:
                    marks["process"] = max(born - t0, marks.get("claimed", 0.0))
            if row.get("state") in ("failed", "cancelled"):
                raise RuntimeError(f"the job {row['state']}: {row.get('error')}")
            if run is None and row.get("run_id"):
                run = runs / row["run_id"]
            if run is None:
                found = [p for p in runs.iterdir() if (p / "config.json").exists()]
                run = found[0] if found else None
            if run is not None and (run / "config.json").exists():
                marks.setdefault("run created", now)
                kinds = _events(run)
                if "start" in kinds:
                    marks.setdefault("start event", now)
                if "step" in kinds:
                    marks["first point"] = now
            time.sleep(0.01)
    finally:
        with _suppress():
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        shutil.rmtree(runs, ignore_errors=True)
    return marks


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


STAGES_CHILD = r"""
import time, sys, json
t = {"interpreter": time.time()}
import lab.entry.jobrun
t["import lab.entry.jobrun"] = time.time()
import torch, torchvision, lab.launch.run, lab.launch.session, lab.views.progress
t["import torch, torchvision, engine"] = time.time()
from pathlib import Path
from lab.levels import build_config
from lab.data import load_dataset
from lab.core.models import build_model
from lab.core.prepare import prepare_data
from lab.core.parts import build_parts
from lab.core.loop import _step
from lab.core.collectives import Dist
config = build_config(3, None, dict(dataset="digits", image_size=32, epochs=1, device="cpu"), [])
data = load_dataset("digits", Path(sys.argv[1]))
t["load data"] = time.time()
build_model(config, len(data.classes))
t["build model"] = time.time()
device = torch.device("cpu")
prepared = prepare_data(config, Path(sys.argv[1]), device)
parts = build_parts(config, 10, len(prepared.train), device, None, Dist.single())
t["prepare data + parts (as a run)"] = time.time()
prepared.train.set_epoch(1)
images, labels = next(iter(prepared.train))
_step(parts, images, labels)
t["first step"] = time.time()
print(json.dumps(t))
"""


def stages(tree: Path) -> dict[str, float]:
    """Seconds each part of a cold job process's set-up takes, in a fresh interpreter."""
    data = Path(tempfile.mkdtemp(prefix="first-point-data-"))
    try:
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", STAGES_CHILD, str(data)], cwd=tree,
                              env=_env(tree), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1])
        marks = json.loads(proc.stdout)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    names = list(marks)
    out = {"interpreter start": marks["interpreter"] - t0}
    for before, name in zip(names, names[1:], strict=False):
        out[name] = marks[name] - marks[before]
    out["total"] = marks[names[-1]] - t0
    return out


def _table(title: str, rows: dict[str, dict[str, list[float]]], trees: list[Path]) -> None:
    names = [str(t) for t in trees]
    print(f"\n{title}")
    print(f"{'':34}" + "".join(f"{n[-28:]:>30}" for n in names))
    stage_names = list(dict.fromkeys(k for t in names for k in rows[t]))
    for stage in stage_names:
        cells = []
        for t in names:
            values = rows[t].get(stage, [])
            if values:
                med = statistics.median(values)
                spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
                cells.append(f"{med:.2f}s{spread}")
            else:
                cells.append("-")
        print(f"{stage:34}" + "".join(f"{c:>30}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout of lab to measure (repeatable); default: this one")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds the worker runs before the submit")
    parser.add_argument("--stages", action="store_true",
                        help="also time a cold job process's set-up, part by part")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [Path(__file__).resolve().parent.parent])]
    print("load before:", os.popen("uptime").read().strip())
    results: dict[str, dict[str, list[float]]] = {str(t): {} for t in trees}
    parts: dict[str, dict[str, list[float]]] = {str(t): {} for t in trees}
    for k in range(args.trials):
        for tree in trees:  # alternate, so that load changes fall on every tree alike
            marks = trial(tree, args.settle)
            print(f"trial {k + 1} {tree}: " + ", ".join(f"{n} {v:.2f}s" for n, v in marks.items()),
                  flush=True)
            for name, value in marks.items():
                results[str(tree)].setdefault(name, []).append(value)
            if args.stages:
                for name, value in stages(tree).items():
                    parts[str(tree)].setdefault(name, []).append(value)
    print("load after: ", os.popen("uptime").read().strip())
    _table("seconds after `lab submit` started (median, range)", results, trees)
    if args.stages:
        _table("a cold job process's set-up, part by part (median, range)", parts, trees)
    return 0


if __name__ == "__main__":
    sys.exit(main())

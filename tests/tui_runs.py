"""Run directories for the console's tests: real ones made by the engine, and synthetic ones with
fixed ids, times and numbers (snapshots must not change from one day to the next)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console

from lab.levels import level_config
from lab.runs import RunDir, append_jsonl, atomic_write_bytes, atomic_write_json
from tui.device import DeviceStat

FIXED_NOW = 1740830400.0  # 2025-03-01T12:00:00Z: the snapshots' clock
CLASSES = [str(i) for i in range(10)]
GB = 1024**3


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test with asyncio (no async plugin needed); fixtures pass through."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 15.0) -> None:
    """Let the app run until `condition()` holds (a test fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        await pilot.pause(0.05)


def fixed_devices() -> list[DeviceStat]:
    return [DeviceStat("GPU 0", 87.0, 31.2 * GB, 139 * GB)]


def plain(renderable: Any, width: int = 140) -> str:
    """What a renderable shows, as text."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def make_real_runs(root: Path) -> dict[str, Any]:
    """Two tiny real runs on the bundled digits: Level 1 (ResNet18 from scratch, one epoch) and
    Level 3 (a small CNN, two epochs, with its end-of-run Grad-CAM gallery)."""
    from lab.launch.run import start_run

    runs, data = root / "runs", root / "data"
    tiny = dict(dataset="digits", image_size=16, device="cpu")
    # a tenth of the images for training: a ResNet18 epoch on a busy 2-core box stays short
    l1 = level_config(1).replace(weights="none", epochs=1, gradcam=0, train_fraction=0.1,
                                 val_fraction=0.1, **tiny)
    l3 = level_config(3).replace(epochs=2, lr=3e-3, cnn_channels=(8, 16, 16, 32), cnn_hidden=32,
                                 gradcam=1, **tiny)
    run1, result1 = start_run(l1, runs, data)
    run3, result3 = start_run(l3, runs, data)
    return {"runs": runs, "data": data, "l1": run1.id, "l3": run3.id, "r1": result1,
            "r3": result3}


def copy_runs(src: Path, dst: Path, keep_checkpoints: bool = False) -> None:
    """A private copy for one test (the ResNet checkpoint is 130 MB and rarely needed)."""
    ignore = None if keep_checkpoints else shutil.ignore_patterns("checkpoint.pt")
    for run in src.iterdir():
        if run.is_dir():
            shutil.copytree(run, dst / run.name, ignore=ignore)


def write_run(runs_dir: Path, run_id: str, level: int, *, state: str = "done",
              epochs: int = 5, done_epochs: int | None = None, final_acc: float = 0.9,
              created: str = "2025-03-01T10:00:00+00:00", steps_per_epoch: int = 20,
              corrupt: str | None = None, config: dict[str, Any] | None = None) -> RunDir:
    """A run as the engine would leave it, with numbers from a formula (no training).
    `config`: fields over the level's preset (e.g. a study's name, seed, lr)."""
    changes: dict[str, Any] = dict(dataset="digits", image_size=32, epochs=epochs, device="cpu")
    if level in (1, 2):
        changes["weights"] = "none"
    changes.update(config or {})
    config = level_config(level).replace(**changes)
    run = RunDir(Path(runs_dir) / run_id)
    run.path.mkdir(parents=True)
    atomic_write_bytes(run.config_path, (config.to_json() + "\n").encode())
    finished = epochs if done_epochs is None else done_epochs
    status: dict[str, Any] = {"state": state, "created": created, "started": created,
                              "epoch": finished, "step": finished * steps_per_epoch,
                              "device": "cpu", "error": None}
    if state == "running":
        status.update(pid=os.getpid(), host=os.uname().nodename)
    if state == "failed":
        status["error"] = "RunFailed: training diverged: loss is nan at step 61 (lower --lr)"
    atomic_write_json(run.status_path, status)
    append_jsonl(run.metrics_path, {
        "event": "start", "epoch": 0, "step": 0, "time": created, "device": "cpu",
        "precision": "fp32", "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "classes": CLASSES, "notes": []})
    for epoch in range(1, finished + 1):
        for k in range(1, steps_per_epoch // 10 + 1):
            step = (epoch - 1) * steps_per_epoch + 10 * k
            append_jsonl(run.metrics_path, {"event": "step", "epoch": epoch, "step": step,
                                            "loss": round(2.3 * math.exp(-step / 40) + 0.1, 4),
                                            "lr": 1e-4})
        append_jsonl(run.metrics_path, epoch_event(epoch, epochs, final_acc, steps_per_epoch))
    if state == "done":
        test_acc = final_acc - 0.01
        append_jsonl(run.metrics_path, {"event": "test", "epoch": epochs,
                                        "step": epochs * steps_per_epoch,
                                        "test_loss": 0.3, "test_acc": test_acc})
        atomic_write_json(run.result_path, result(run_id, level, test_acc, epochs))
    if corrupt == "result":
        run.result_path.write_text('{"test_acc": 0.9, "per_cl')
    elif corrupt == "metrics":
        with open(run.metrics_path, "ab") as fh:
            fh.write(b'{"event":"epoch","epoch":9,"train_lo')
    return run


def epoch_event(epoch: int, epochs: int, final_acc: float, steps_per_epoch: int) -> dict:
    share = epoch / epochs
    val_acc = round(0.3 + (final_acc - 0.3) * (1 - math.exp(-3 * share)) / (1 - math.exp(-3)), 4)
    return {"event": "epoch", "epoch": epoch, "step": epoch * steps_per_epoch,
            "train_loss": round(2.0 * math.exp(-2 * share) + 0.1, 4),
            "train_acc": round(val_acc + 0.02, 4), "val_loss": round(2.1 * math.exp(-2 * share)
                                                                    + 0.15, 4),
            "val_acc": val_acc, "seconds": 12.5, "images_per_s": 1150.0, "lr": 1e-4}


def result(run_id: str, level: int, test_acc: float, epochs: int) -> dict[str, Any]:
    n = 18
    confusion = []
    for i in range(10):
        wrong = round(n * (1 - test_acc) * (1.5 if i in (3, 8) else 0.8))
        row = [0] * 10
        row[i] = n - wrong
        row[(i + 5) % 10] += wrong
        confusion.append(row)
    per_class = []
    for i, row in enumerate(confusion):
        tp, support = row[i], sum(row)
        predicted = sum(r[i] for r in confusion)
        p, r = tp / predicted, tp / support
        per_class.append({"class": CLASSES[i], "precision": round(p, 4), "recall": round(r, 4),
                          "f1": round(2 * p * r / (p + r), 4), "support": support})
    pairs = sorted(({"true": CLASSES[i], "predicted": CLASSES[j], "count": confusion[i][j],
                     "share": round(confusion[i][j] / sum(confusion[i]), 4)}
                    for i in range(10) for j in range(10) if i != j and confusion[i][j]),
                   key=lambda p: (-p["count"], p["true"]))
    macro = {k: round(sum(c[k] for c in per_class) / 10, 4) for k in ("precision", "recall",
                                                                      "f1")}
    return {"run_id": run_id, "level": level, "dataset": "digits", "classes": CLASSES,
            "test_acc": test_acc, "test_loss": 0.3, "per_class": per_class, "macro": macro,
            "confusion": confusion, "most_confused": pairs[:10], "epochs": epochs,
            "augmentation": "none" if level == 1 else "rot 10°, crop 4, jitter"}


def write_study(runs_dir: Path) -> dict[str, str]:
    """Five runs with fixed ids and times: each level done, a running one, a failed one."""
    ids = {"l1": "20250301-090000-l1-0a01", "l2": "20250301-093000-l2-0b02",
           "l3": "20250301-100000-l3-0c03", "running": "20250301-113000-l3-0d04",
           "failed": "20250301-110000-l2-0e05"}
    write_run(runs_dir, ids["l1"], 1, final_acc=0.95, created="2025-03-01T09:00:00+00:00")
    write_run(runs_dir, ids["l2"], 2, final_acc=0.97, created="2025-03-01T09:30:00+00:00")
    write_run(runs_dir, ids["l3"], 3, final_acc=0.88, created="2025-03-01T10:00:00+00:00")
    write_run(runs_dir, ids["failed"], 2, state="failed", done_epochs=3, final_acc=0.6,
              created="2025-03-01T11:00:00+00:00")
    write_run(runs_dir, ids["running"], 3, state="running", epochs=8, done_epochs=3,
              final_acc=0.8, created="2025-03-01T11:30:00+00:00")
    return ids


SEEDS = {f"20250301-08000{i}-l2-5a0{i}": acc for i, acc in enumerate((0.93, 0.96, 0.94), 1)}
LRS = {f"20250301-07000{i}-l3-6b0{i}": acc for i, acc in enumerate((0.80, 0.84), 1)}


def write_studies(runs: Path) -> None:
    """Two studies beside the five runs of `write_study`: `seeds` (three Level 2 runs, one per
    seed, all done) and `lr` (two Level 3 runs, one lr each)."""
    for i, (run_id, acc) in enumerate(SEEDS.items(), 1):
        write_run(runs, run_id, 2, final_acc=acc, created=f"2025-03-01T08:00:0{i}+00:00",
                  config={"study": "seeds", "seed": i})
    for i, (run_id, acc) in enumerate(LRS.items(), 1):
        write_run(runs, run_id, 3, final_acc=acc, created=f"2025-03-01T07:00:0{i}+00:00",
                  config={"study": "lr", "lr": 1e-3 * i})


def events_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

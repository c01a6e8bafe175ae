"""How long the console takes to show a long list: `python -m tui.bench --runs 200`.

Writes N synthetic finished runs (records as the engine leaves them, numbers from a formula, no
training) into a temporary runs directory, then starts a fresh interpreter that imports what
`lab tui` imports, builds the app headless with `App.run_test()` and waits for the list to hold
all N rows. It prints the seconds from that process's start to the filled list, once per start
(the second start is the one users see: the files are in the page cache). A figure to watch, not
a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [str(i) for i in range(10)]


def write_runs(runs_dir: Path, n: int, epochs: int = 2, steps_per_epoch: int = 40) -> list[str]:
    """N finished Level 3 runs on digits: one written through the engine's record API, then
    copied under N distinct ids (a list of 200 runs is 200 directories to read)."""
    from lab.levels import level_config
    from lab.runs import RunDir, append_jsonl, atomic_write_bytes, atomic_write_json

    runs_dir.mkdir(parents=True, exist_ok=True)
    config = level_config(3).replace(dataset="digits", image_size=16, epochs=epochs,
                                     device="cpu", gradcam=0)
    created = "2025-03-01T10:00:00+00:00"
    template = RunDir(runs_dir / "20250301-100000-l3-0000")
    template.path.mkdir()
    atomic_write_bytes(template.config_path, (config.to_json() + "\n").encode())
    atomic_write_json(template.status_path, {
        "state": "done", "created": created, "started": created, "epoch": epochs,
        "step": epochs * steps_per_epoch, "device": "cpu", "error": None})
    append_jsonl(template.metrics_path, {
        "event": "start", "epoch": 0, "step": 0, "time": created, "device": "cpu",
        "precision": "fp32", "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "classes": CLASSES, "notes": []})
    for epoch in range(1, epochs + 1):
        for k in range(1, steps_per_epoch // 10 + 1):
            step = (epoch - 1) * steps_per_epoch + 10 * k
            append_jsonl(template.metrics_path, {
                "event": "step", "epoch": epoch, "step": step,
                "loss": round(2.3 * math.exp(-step / 40) + 0.1, 4), "lr": 1e-3})
        val_acc = round(0.9 - 0.5 * math.exp(-2 * epoch / epochs), 4)
        append_jsonl(template.metrics_path, {
            "event": "epoch", "epoch": epoch, "step": epoch * steps_per_epoch,
            "train_loss": round(2.0 * math.exp(-2 * epoch / epochs) + 0.1, 4),
            "train_acc": val_acc, "val_loss": round(2.1 * math.exp(-2 * epoch / epochs), 4),
            "val_acc": val_acc, "seconds": 2.0, "images_per_s": 1000.0, "lr": 1e-3})
    append_jsonl(template.metrics_path, {"event": "test", "epoch": epochs,
                                         "step": epochs * steps_per_epoch,
                                         "test_loss": 0.3, "test_acc": 0.88})
    confusion = [[16 if i == j else (2 if j == (i + 5) % 10 else 0) for j in range(10)]
                 for i in range(10)]
    atomic_write_json(template.result_path, {
        "run_id": template.id, "level": 3, "dataset": "digits", "classes": CLASSES,
        "test_acc": 0.88, "test_loss": 0.3, "epochs": epochs, "confusion": confusion,
        "per_class": [{"class": c, "precision": 0.89, "recall": 0.89, "f1": 0.89, "support": 18}
                      for c in CLASSES],
        "macro": {"precision": 0.89, "recall": 0.89, "f1": 0.89}, "most_confused": [],
        "augmentation": "rot 10°, crop 4, jitter"})
    ids = [template.id]
    for i in range(1, n):
        run_id = f"20250301-{100000 + i:06d}-l3-{i:04x}"
        shutil.copytree(template.path, runs_dir / run_id)
        ids.append(run_id)
    return ids


async def _until_filled(runs_dir: Path, data_dir: Path, n: int) -> None:
    from tui import make_app

    app = make_app(runs_dir, data_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("RunTable")
        while app.ready_rows is None or table.row_count < n:
            await pilot.pause(0.01)


def _child(runs_dir: Path, data_dir: Path, n: int) -> None:
    """In the fresh interpreter: the app's imports, the app, a filled list; then the time."""
    import lab.cli  # noqa: F401 - what `lab tui` imports before the app

    asyncio.run(_until_filled(runs_dir, data_dir, n))
    print(f"{time.time() - float(os.environ['TUI_BENCH_T0']):.3f}", flush=True)


def bench(n: int, starts: int = 2) -> list[float]:
    """Seconds from a fresh process's start to a list of `n` rows, for each of `starts`."""
    with tempfile.TemporaryDirectory(prefix="tui-bench-") as tmp:
        runs_dir, data_dir = Path(tmp) / "runs", Path(tmp) / "data"
        write_runs(runs_dir, n)
        timings = []
        for _ in range(starts):
            env = {**os.environ, "TUI_BENCH_T0": repr(time.time())}
            done = subprocess.run(
                [sys.executable, "-m", "tui.bench", "--child", str(runs_dir), str(data_dir),
                 "--runs", str(n)], capture_output=True, text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"the console did not start:\n{done.stderr[-2000:]}")
            timings.append(float(done.stdout.split()[-1]))
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tui.bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs in the list (default 200)")
    parser.add_argument("--starts", type=int, default=2, help="fresh starts to time (default 2)")
    parser.add_argument("--child", nargs=2, metavar=("RUNS", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.starts < 1:
        parser.error("--runs and --starts: at least 1")
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]), args.runs)
        return
    timings = bench(args.runs, args.starts)
    shown = ", ".join(f"{t:.2f}" for t in timings)
    print(f"console start to a list of {args.runs} runs: {shown} s (best {min(timings):.2f} s)")


if __name__ == "__main__":
    main()

"""How fast the console comes up: `python -m tui.bench --runs 3 [--against ../main]`.

Writes N synthetic finished runs (records as the engine leaves them, numbers from a formula, no
training) into a temporary runs directory, then measures, in fresh interpreters:
- `import tui.app`: the console's own import time (the interpreter's start not counted);
- `lab tui` to its list: the real command as a user types it (`lab.cli.main(["tui"])`, the
  directories from LAB_RUNS_DIR and LAB_DATA_DIR) in a pseudo-terminal that answers the graphics
  queries as tmux does, from the process's start until the list with all N rows has been drawn
  once (the app then quits).
Each figure is taken `--starts` times, alternating between this tree and `--against` (another
checkout, e.g. main) so both see the same load, and printed side by side with their ratio. Both
trees' byte code is compiled first, as a user's is after the first start.
A figure to watch, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import compileall
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [str(i) for i in range(10)]
# what `import tui.app` should not load: the first screen draws no chart, no compare screen
HEAVY = ("plotext", "torch", "tui.screens.compare", "lab.views.charts", "sklearn",
         "textual_image", "numpy", "PIL", "typer")


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


_IMPORT = """
import sys, time
t, c = time.perf_counter(), time.process_time()
import tui.app
took, cpu = time.perf_counter() - t, time.process_time() - c
print(took, cpu, ",".join(m for m in sys.argv[1:] if m in sys.modules))
"""

# `lab tui` as the console script runs it, except that the list's first drawing is noted in a
# file and quits the app (the app's class is patched: `lab tui` imports tui.app anyway)
_START = """
import sys, time
import tui.app
def _ready(app, message, _seen=tui.app.LabApp.on_list_ready):
    _seen(app, message)
    def done():
        with open(sys.argv[1], "w") as fh:
            fh.write(repr(time.time()))
        app.exit()
    app.call_after_refresh(done)
tui.app.LabApp.on_list_ready = _ready
from lab.cli import main
main(["tui"])
"""

# what tmux answers: primary device attributes (VT220, no sixel) and the cell size in pixels;
# the kitty graphics query goes unanswered (textual-image waits 0.1 s for it, as in tmux)
_ANSWERS = {b"\x1b[c": b"\x1b[?62;22c", b"\x1b[16t": b"\x1b[6;20;10t"}


def _env(tree: Path, **extra: str) -> dict[str, str]:
    """The tree first on the path (the children also run in it: `-c` puts the cwd first)."""
    return {**os.environ, "PYTHONPATH": str(tree), "TERM": "xterm-256color", **extra}


def read_and_answer(master: int, seen: bytes, answered: dict[bytes, int],
                    answers: dict[bytes, bytes]) -> bytes | None:
    """Read what the terminal's program wrote (`seen` so far, and more) and answer each new
    query in `answers` as a terminal would; `answered` counts them. None once it has closed."""
    try:
        seen += os.read(master, 1 << 16)
    except OSError:  # EIO: the child has closed its end
        return None
    due = []  # (where the query is, its answer): a terminal answers in the order it was asked
    for query, answer in answers.items():
        at = [m.start() for m in re.finditer(re.escape(query), seen)]
        due += [(pos, answer) for pos in at[answered.get(query, 0):]]
        answered[query] = len(at)
    for _pos, answer in sorted(due, key=lambda d: d[0]):
        os.write(master, answer)
    return seen


def import_seconds(tree: Path) -> tuple[float, float, list[str]]:
    """Seconds (wall, CPU) to import tui.app in a fresh interpreter, and which HEAVY modules
    it loaded."""
    done = subprocess.run([sys.executable, "-c", _IMPORT, *HEAVY], capture_output=True,
                          text=True, env=_env(tree), cwd=tree, timeout=300, check=True)
    took, cpu, *loaded = done.stdout.split()
    return float(took), float(cpu), [m for m in "".join(loaded).split(",") if m]


def start_seconds(tree: Path, runs_dir: Path, data_dir: Path, size: tuple[int, int] = (120, 40),
                  timeout: float = 300) -> tuple[float, float]:
    """Seconds from starting `lab tui` in a pseudo-terminal to its list drawn once, and the CPU
    seconds the process used in all (its exit included): the figure a busy machine blurs
    least."""
    import fcntl
    import pty
    import resource
    import select
    import struct
    import termios

    with tempfile.TemporaryDirectory(prefix="tui-bench-ready-") as tmp:
        ready = Path(tmp) / "ready"
        master, slave = pty.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-c", _START, str(ready)], stdin=slave,
                                stdout=slave, stderr=slave, cwd=tree, start_new_session=True,
                                env=_env(tree, LAB_RUNS_DIR=str(runs_dir),
                                         LAB_DATA_DIR=str(data_dir)))
        os.close(slave)
        seen, answered = b"", dict.fromkeys(_ANSWERS, 0)
        try:
            while proc.poll() is None or select.select([master], [], [], 0)[0]:
                if time.time() - t0 > timeout:
                    proc.kill()
                    raise RuntimeError(f"the console did not show its list in {timeout:.0f} s")
                if not select.select([master], [], [], 0.02)[0]:
                    continue
                more = read_and_answer(master, seen, answered, _ANSWERS)
                if more is None:
                    break
                seen = more
        finally:
            os.close(master)
            proc.wait()
        if not ready.exists():
            tail = seen.decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"the console did not start (exit {proc.returncode}):\n{tail}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
        return float(ready.read_text()) - t0, cpu


ROWS = (("import", "import tui.app"), ("import cpu", "  its CPU seconds"),
        ("start", "lab tui to its list"), ("start cpu", "  its CPU seconds"))


def _figures(values: list[float]) -> str:
    return f"{min(values):5.2f} {statistics.median(values):5.2f}"


def bench(n: int, starts: int, trees: list[Path]) -> dict[str, dict[Path, list[float]]]:
    """Each figure for each tree, `starts` times, the trees taking turns."""
    figures: dict[str, dict[Path, list[float]]] = {name: {} for name, _ in ROWS}
    loaded: dict[Path, list[str]] = {}
    for tree in trees:  # as after a first start (PYTHONDONTWRITEBYTECODE would compile each time)
        for package in ("lab", "tui"):
            compileall.compile_dir(tree / package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="tui-bench-") as tmp:
        runs_dir, data_dir = Path(tmp) / "runs", Path(tmp) / "data"
        write_runs(runs_dir, n)
        for _ in range(starts):
            for tree in trees:
                took, cpu, loaded[tree] = import_seconds(tree)
                start, start_cpu = start_seconds(tree, runs_dir, data_dir)
                for name, value in (("import", took), ("import cpu", cpu), ("start", start),
                                    ("start cpu", start_cpu)):
                    figures[name].setdefault(tree, []).append(value)
    for tree in trees:
        heavy = ", ".join(loaded[tree]) or "none"
        print(f"{tree}: import tui.app loads {heavy} (of {', '.join(HEAVY)})")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tui.bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs on disk (default 3)")
    parser.add_argument("--starts", type=int, default=5, help="fresh starts per figure "
                        "(default 5)")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="another checkout to measure alongside (e.g. ../main)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.starts < 1:
        parser.error("--runs and --starts: at least 1")
    here = Path(__file__).resolve().parent.parent
    trees = [here, *(p.resolve() for p in args.against)]
    for tree in trees:
        if not (tree / "tui" / "app.py").is_file():
            parser.error(f"--against {tree}: not a checkout of this project (no tui/app.py)")
    figures = bench(args.runs, args.starts, trees)
    print(f"console start-up, {args.runs} runs on disk, {args.starts} starts (seconds: "
          "best median)")
    for name, label in ROWS:
        row = "   ".join(f"{_figures(figures[name][t])}" for t in trees)
        ratio = ""
        if len(trees) > 1:
            mine = statistics.median(figures[name][here])
            ratio = "   ratio " + " ".join(
                f"{statistics.median(figures[name][t]) / mine:.2f}" for t in trees[1:])
        print(f"  {label:<22} {row}{ratio}")
    print("  columns: " + "   ".join(str(t) for t in trees))


if __name__ == "__main__":
    main()

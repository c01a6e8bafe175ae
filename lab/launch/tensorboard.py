"""TensorBoard event files beside a run's own records, for those who keep their dashboards.

`runs/<id>/tb/` gets every number `metrics.jsonl` holds (tag `<event>/<metric>`, at the event's
global step: `step/loss`, `epoch/val_acc`, `test/test_acc`), at the end the per-class F1
(`test/f1/<class>`), the hyperparameters with the final metrics (the hparams plugin) and the
Grad-CAM grid as an image. A run with `--set tensorboard=true` writes them as it trains
(`TensorBoardHook`); `lab tb export RUN...` writes them afterwards from the records alone, so
old runs get them too, and a live file is never needed. Off by default: a run's records are
complete without it, and the `tensorboard` extra is not part of the base install.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from lab import extras
from lab.core.hooks import Hook
from lab.runs import RunDir
from lab.runs.store import read_jsonl_counted

TB_DIR = "tb"
POSITION = ("event", "epoch", "step")


def tb_dir(run: RunDir) -> Path:
    return run.path / TB_DIR


def writer_for(path: Path) -> Any:
    extras.require("tensorboard", "TensorBoard event files")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(path), flush_secs=30)


def scalars(event: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(tag, value, step) for each number of one metrics event."""
    kind, step = str(event.get("event")), event.get("step")
    if not isinstance(step, int):
        return []
    return [(f"{kind}/{name}", float(value), step) for name, value in event.items()
            if name not in POSITION and isinstance(value, (int, float))
            and not isinstance(value, bool)]


def write_end(run: RunDir, writer: Any) -> None:
    """What only the end knows: per-class F1, hparams with the final metrics, the grid."""
    result = run.result()
    if not result:
        return
    step = _last_step(run)
    for row in result.get("per_class") or []:
        writer.add_scalar(f"test/f1/{row['class']}", float(row["f1"]), step)
    config = run.config().to_dict()
    hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
               for k, v in config.items() if v is not None}
    final = {"hparam/test_acc": float(result["test_acc"])}
    if isinstance(result.get("best_val_acc"), (int, float)):
        final["hparam/best_val_acc"] = float(result["best_val_acc"])
    writer.add_hparams(hparams, final, run_name=".", global_step=step)
    grid = _grid(run)
    if grid is not None:
        import numpy as np
        from PIL import Image

        with Image.open(grid) as image:
            pixels = np.asarray(image.convert("RGB"))
        writer.add_image("gradcam/grid", pixels, step, dataformats="HWC")


def _last_step(run: RunDir) -> int:
    events, _ = read_jsonl_counted(run.metrics_path)
    return max((e["step"] for e in events if isinstance(e.get("step"), int)), default=0)


def _grid(run: RunDir) -> Path | None:
    """The newest gallery's grid.png, if the run has one."""
    from lab.explain.index import scan_galleries

    for entry in scan_galleries(run.path / "gradcam"):
        if entry.get("grid"):
            path = run.path / "gradcam" / entry["grid"]
            if path.is_file():
                return path
    return None


def export_run(run: RunDir) -> Path:
    """Write `tb/` for a run from its records, replacing an older export whole (written
    beside it, then swapped in: a failure leaves the old one)."""
    extras.require("tensorboard", "lab tb export")
    final, tmp = tb_dir(run), run.path / f".{TB_DIR}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    writer = writer_for(tmp)
    try:
        events, _torn = read_jsonl_counted(run.metrics_path)
        for event in events:
            for tag, value, step in scalars(event):
                writer.add_scalar(tag, value, step)
        write_end(run, writer)
    finally:
        writer.close()
    old = run.path / f".{TB_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


class TensorBoardHook(Hook):
    """Scalars as the run records them; the end's summary once the gallery is made."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.writer = writer_for(tb_dir(run))

    def on_event(self, event: dict[str, Any], sync: bool = False) -> None:
        for tag, value, step in scalars(event):
            self.writer.add_scalar(tag, value, step)
        if sync:
            self.writer.flush()

    def finish(self) -> None:
        """After result.json and the gallery: the end's summary, then close."""
        with contextlib.suppress(Exception):  # the dashboard copy never fails the run
            write_end(self.run, self.writer)
        self.close()

    def close(self) -> None:
        self.writer.close()

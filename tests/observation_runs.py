"""Synthetic study runs with known per-class accuracies and Grad-CAM maps with known central
heat, for the observations and the study report (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lab.runs import RunDir, atomic_write_json
from tests.tui_runs import write_run

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]
SIDE = 32  # the maps' size


def class_result(run_id: str, level: int, correct: dict[str, int], support: int,
                 dataset: str = "cifar10") -> dict:
    """A result.json whose class c has `correct[c]` of `support` test images right (the
    mistakes go to the next class)."""
    classes = list(correct)
    n = len(classes)
    confusion = [[0] * n for _ in range(n)]
    for i, name in enumerate(classes):
        confusion[i][i] = correct[name]
        confusion[i][(i + 1) % n] += support - correct[name]
    per_class = [{"class": c, "precision": 1.0, "recall": correct[c] / support,
                  "f1": round(correct[c] / support, 4), "support": support} for c in classes]
    acc = sum(correct.values()) / (n * support)
    return {"run_id": run_id, "level": level, "dataset": dataset, "classes": classes,
            "test_acc": acc, "test_loss": 0.5, "per_class": per_class, "confusion": confusion,
            "most_confused": [], "epochs": 2, "augmentation": "none"}


def study_run(runs: Path, run_id: str, level: int, seed: int, correct: dict[str, int],
              support: int, study: str = "s1", dataset: str = "cifar10",
              config: dict | None = None) -> RunDir:
    """A finished run of `study` whose result is `class_result(...)`."""
    run = write_run(runs, run_id, level, epochs=2, final_acc=0.5 + 0.1 * seed,
                    created=f"2025-03-01T{10 + seed:02d}:00:00+00:00",
                    config={"study": study, "seed": seed, "dataset": dataset, **(config or {})})
    atomic_write_json(run.result_path, class_result(run_id, level, correct, support, dataset))
    return run


def heat_map(share: tuple[int, int]) -> np.ndarray:
    """A map with `inside` hot pixels in the image's centre (inside any central box of half
    the area) and `outside` hot pixels in its top rows: its central share is inside/total."""
    inside, outside = share
    cam = np.zeros((SIDE, SIDE), dtype=np.float16)
    centre = [(r, c) for r in range(12, 20) for c in range(12, 20)]  # 64 pixels, middle
    edge = [(r, c) for r in range(0, 3) for c in range(SIDE)]  # 96 pixels, top rows
    assert inside <= len(centre) and outside <= len(edge)
    for r, c in centre[:inside] + edge[:outside]:
        cam[r, c] = 1.0
    return cam


def write_gallery(run: RunDir, correct: list[tuple[int, int]], wrong: list[tuple[int, int]],
                  grid: bool = True, raw: bool = True, name: str = "gradcam") -> None:
    """A gallery as lab.explain.gradcam.write_gallery lays it out: index files, a grid PNG and
    the raw maps in cams.npz (`correct`/`wrong`: (inside, outside) hot pixels per map)."""
    folder = run.path / "gradcam" / name
    folder.mkdir(parents=True)
    maps = [heat_map(s) for s in correct + wrong]
    true = [0] * len(maps)
    predicted = [0] * len(correct) + [1] * len(wrong)
    items = [{"file": f"x-{i}.png", "test_index": i, "true": "a", "predicted": "a" if p == 0
              else "b", "confidence": 0.9, "correct": p == 0, "caption": f"map {i}"}
             for i, p in enumerate(predicted)]
    if raw:
        np.savez_compressed(folder / "cams.npz", cams=np.stack(maps).astype(np.float16),
                            test_index=np.arange(len(maps)), true=np.array(true),
                            predicted=np.array(predicted),
                            confidence=np.full(len(maps), 0.9, dtype=np.float32),
                            classes=np.array(["a", "b"]))
    if grid:
        pixels = np.random.default_rng(len(maps)).integers(0, 255, (40, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "grid.png")
    (folder / "index.json").write_text(json.dumps(
        {"name": name, "method": "gradcam", "layer": "features.3",
         "grid": "grid.png" if grid else None, "items": items}))
    (run.path / "gradcam" / "index.json").write_text(json.dumps({"galleries": [
        {"name": name, "method": "gradcam", "layer": "features.3", "count": len(items),
         "grid": f"{name}/grid.png" if grid else None}]}))

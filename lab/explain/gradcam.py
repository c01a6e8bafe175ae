"""Grad-CAM galleries: where the model looks, on the test images it gets right and wrong.

CAMs come from pytorch-grad-cam. Its pitfalls shape this module: every image gets its own target
(the class it was predicted as), the CAM object puts the model in eval mode (we restore the mode),
its hooks are released in a `finally` (its context manager swallows IndexError, and an object left
to the garbage collector keeps hooks and activations alive), Score-CAM's tqdm bars are muted, and
it always runs on the plain module, never a `torch.compile`d one.

A gallery is a folder `runs/<id>/gradcam/<name>/` with one PNG per example (input, overlay and
caption), `grid.png`, `index.json` and the raw maps in `cams.npz`; `gradcam/index.json` lists
the galleries of a run. Examples are chosen deterministically: per class, the most confident
correct predictions and the most confident mistakes.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from lab.data.store import swap_into_place
from lab.errors import ConfigError, DataError
from lab.explain.index import entry_of, read_galleries, scan_galleries
from lab.explain.layers import TargetLayer
from lab.runs import atomic_write_json, now_iso

METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM",
           "eigencam": "EigenCAM"}
ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++",
           "score-cam": "scorecam", "eigen-cam": "eigencam"}
TILE = 128  # side of each panel in an example PNG
GRID_TILE = 112


def canonical_method(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise ConfigError(f"unknown Grad-CAM method {name!r}: choose {', '.join(METHODS)}")
    return key


@dataclass(frozen=True)
class Example:
    test_index: int
    true: int
    predicted: int
    confidence: float

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


def select_examples(y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray,
                    num_classes: int, n: int, only_class: int | None = None,
                    wrong_only: bool = False) -> list[Example]:
    """Per class (by true label): the n most confident correct and n most confident wrong.

    Ties break by test index, so the same predictions always give the same gallery.
    """
    examples: list[Example] = []
    classes = [only_class] if only_class is not None else range(num_classes)
    for c in classes:
        in_class = np.flatnonzero(y_true == c)
        kinds = (False,) if wrong_only else (True, False)
        for want_correct in kinds:
            pick = in_class[(y_pred[in_class] == c) == want_correct]
            order = np.lexsort((pick, -confidence[pick]))[:n]
            examples += [Example(int(i), int(y_true[i]), int(y_pred[i]), float(confidence[i]))
                         for i in pick[order]]
    return examples


def compute_cams(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: list[int],
                 method: str = "gradcam", batch_size: int = 32) -> np.ndarray:
    """CAMs (N, H, W) in [0, 1] at the input size, one target class per image."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = canonical_method(method)
    cam_class = getattr(pytorch_grad_cam, METHODS[method])
    was_training = model.training
    cam = cam_class(model=model, target_layers=[layer])
    if method == "scorecam":
        cam.batch_size = batch_size
    maps = []
    try:
        with torch.enable_grad(), contextlib.redirect_stderr(io.StringIO()):
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                chunk_targets = [ClassifierOutputTarget(int(t))
                                 for t in targets[start:start + batch_size]]
                maps.append(np.asarray(cam(input_tensor=chunk, targets=chunk_targets),
                                       dtype=np.float32))
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if not maps:
        return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
    return np.nan_to_num(np.concatenate(maps), nan=0.0)


def overlay(image: np.ndarray, cam: np.ndarray, size: int) -> tuple[Image.Image, Image.Image]:
    """The input upscaled and the heatmap laid over it, both size×size."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    base = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    heat = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    rgb = np.asarray(base, dtype=np.float32) / 255.0
    mixed = show_cam_on_image(rgb, heat, use_rgb=True, image_weight=0.55)
    return base, Image.fromarray(mixed)


def caption(example: Example, classes: list[str]) -> str:
    # ASCII only: Pillow's built-in font has no arrows or middle dots
    return (f"true {classes[example.true]}, pred {classes[example.predicted]}, "
            f"{100 * example.confidence:.0f}%")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def example_png(image: np.ndarray, cam: np.ndarray, text: str, correct: bool) -> Image.Image:
    """[input | overlay] side by side with the caption underneath on a dark strip."""
    base, mixed = overlay(image, cam, TILE)
    strip = 22
    canvas = Image.new("RGB", (2 * TILE + 6, TILE + strip), (20, 20, 20))
    canvas.paste(base, (0, 0))
    canvas.paste(mixed, (TILE + 6, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, TILE + 4), text, fill=(120, 220, 120) if correct else (240, 110, 110),
              font=_font(12))
    return canvas


def grid_png(tiles: list[Image.Image], labels: list[str], correct: list[bool],
             columns: int = 8) -> Image.Image:
    """All overlays of a gallery, each framed green (right) or red (wrong), labelled."""
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    cell_w, cell_h = GRID_TILE + 8, GRID_TILE + 22
    canvas = Image.new("RGB", (columns * cell_w, rows * cell_h), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = _font(10)
    for k, (tile, label, ok) in enumerate(zip(tiles, labels, correct, strict=True)):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        frame = (60, 180, 75) if ok else (220, 60, 60)
        draw.rectangle([x + 1, y + 1, x + GRID_TILE + 6, y + GRID_TILE + 6], outline=frame, width=3)
        canvas.paste(tile.resize((GRID_TILE, GRID_TILE)), (x + 4, y + 4))
        while len(label) > 1 and draw.textlength(label, font=font) > GRID_TILE:
            label = label[:-1]
        draw.text((x + 4, y + GRID_TILE + 8), label, fill=(230, 230, 230), font=font)
    return canvas


def gallery_name(method: str, class_name: str | None, wrong_only: bool) -> str:
    name = method.replace("++", "pp")
    if class_name:
        name += "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", class_name)
    if wrong_only:
        name += "-wrong"
    return name


def write_gallery(gradcam_dir: Path, *, model: nn.Module, layer: TargetLayer,
                  images_uint8: torch.Tensor, inputs: torch.Tensor, examples: list[Example],
                  classes: list[str], method: str = "gradcam", class_name: str | None = None,
                  wrong_only: bool = False) -> dict[str, Any]:
    """Compute the CAMs of `examples` and write the gallery folder atomically.

    `images_uint8` (N, 3, H, W) are the test images as stored; `inputs` the same images as the
    model sees them (resized, normalized), in the same order as `examples`.
    """
    method = canonical_method(method)
    name = gallery_name(method, class_name, wrong_only)
    lname, lsize = layer.name, list(layer.size)
    cams = compute_cams(model, layer.module, inputs, [e.predicted for e in examples], method)
    gradcam_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=gradcam_dir))
    try:
        items, overlays, labels = [], [], []
        counters: dict[str, int] = {}
        pictures = images_uint8.permute(0, 2, 3, 1).cpu().numpy()
        for example, image, cam in zip(examples, pictures, cams, strict=True):
            kind = "correct" if example.correct else "wrong"
            stem = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', classes[example.true])}-{kind}"
            counters[stem] = counters.get(stem, 0) + 1
            file = f"{stem}-{counters[stem]}.png"
            text = caption(example, classes)
            example_png(image, cam, text, example.correct).save(tmp / file)
            overlays.append(overlay(image, cam, GRID_TILE)[1])
            labels.append(f"{classes[example.true][:7]}>{classes[example.predicted][:7]} "
                          f"{100 * example.confidence:.0f}%")
            items.append({"file": file, "test_index": example.test_index,
                          "true": classes[example.true], "predicted": classes[example.predicted],
                          "confidence": round(example.confidence, 4),
                          "correct": example.correct, "method": method, "layer": lname,
                          "caption": text})
        if overlays:
            grid_png(overlays, labels, [e.correct for e in examples]).save(tmp / "grid.png")
        np.savez_compressed(
            tmp / "cams.npz", cams=cams.astype(np.float16),
            test_index=np.array([e.test_index for e in examples], dtype=np.int64),
            true=np.array([e.true for e in examples], dtype=np.int64),
            predicted=np.array([e.predicted for e in examples], dtype=np.int64),
            confidence=np.array([e.confidence for e in examples], dtype=np.float32),
            classes=np.array(classes))
        index = {"name": name, "method": method, "layer": lname, "layer_size": lsize,
                 "grid": "grid.png" if overlays else None, "created": now_iso(),
                 "filter": {"class": class_name, "wrong_only": wrong_only}, "items": items}
        atomic_write_json(tmp / "index.json", index)
        swap_into_place(tmp, gradcam_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _update_run_index(gradcam_dir, index)
    return index


def _update_run_index(gradcam_dir: Path, gallery: dict[str, Any]) -> None:
    """Put `gallery` first in the run's list; a corrupt list is rebuilt from the folders."""
    try:
        galleries = read_galleries(gradcam_dir)
    except DataError:
        galleries = scan_galleries(gradcam_dir)
    galleries = [g for g in galleries if g["name"] != gallery["name"]]
    atomic_write_json(gradcam_dir / "index.json", {"galleries": [entry_of(gallery), *galleries]})

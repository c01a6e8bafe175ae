"""`lab predict`: a trained run asked about new images, a batch at a time.

Each image goes the way the run's test images went: decoded to RGB and fitted (aspect kept,
centre crop) to the size the data set stores (`lab.data.images`, the import's own decoder), then
resized to the model's input and normalised on the device (`resize_normalize`, the test
loader's), with flip TTA where the run's mirror decision allows it. Only one batch of decoded
images is held at a time (`Stream.peak_held` says how many were). A file that cannot be read is
reported through `on_error` and the rest go on.

A folder laid out `<class>/...` or `train|val|test/<class>/...` with the run's class names is
labelled: its images are also scored (accuracy, per-class table); a class folder the run does
not know is reported once and its images are predicted unscored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab.core.device import autocast
from lab.core.metrics import classification_summary
from lab.data.archive import Limits
from lab.data.augment import resize_normalize
from lab.data.images import decode_rgb
from lab.data.sources import Entry, Skipped, check_inputs, entries
from lab.errors import ConfigError, LabError
from lab.explain.gradcam import compute_cams, example_png
from lab.explain.layers import TargetLayer, choose_layer
from lab.explain.trained import Trained

SPLITS = ("train", "val", "test")
Notify = Callable[[str, str], None]  # (file or folder, one line)


@dataclass
class Stream:
    """What a prediction pass went through: counts, and the most decoded images held at once."""

    held: int = 0
    peak_held: int = 0
    batches: int = 0
    errors: int = 0

    def take(self, n: int = 1) -> None:
        self.held += n
        self.peak_held = max(self.peak_held, self.held)

    def drop(self, n: int) -> None:
        self.held -= n


@dataclass
class Report:
    run_id: str
    weights: str
    epoch: int
    tta: bool
    predictions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None  # classification_summary of the labelled images
    stream: Stream = field(default_factory=Stream)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "weights": self.weights, "epoch": self.epoch,
                "tta": self.tta, "predictions": self.predictions, "errors": self.errors,
                "notes": self.notes, "labelled": self.summary}


def label_of(parts: tuple[str, ...], classes: list[str]) -> tuple[str | None, str | None]:
    """(class, None) for an image in a class folder of the run, (None, folder) for one in a
    class position whose folder the run does not know, (None, None) for a loose image."""
    folders = parts[:-1]
    if folders and folders[0] in SPLITS and len(folders) >= 2:
        folders = folders[1:]
    if not folders:
        return None, None
    return (folders[0], None) if folders[0] in classes else (None, folders[0])


def heatmap_name(entry: Entry, taken: set[str]) -> str:
    """A file name for an image's heatmap, unique within one pass."""
    parts = entry.parts or (Path(entry.name).name,)
    base = "-".join((*parts[:-1], Path(parts[-1]).stem))
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[-120:].lstrip(".") or "image"
    name, k = f"{stem}.png", 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}.png"
    taken.add(name)
    return name


def resolve_tta(trained: Trained, asked: bool | None) -> tuple[bool, str | None]:
    """The flip TTA to use and a note when one was asked for and the run's data forbids it:
    by default the run's own decision (as its test was scored)."""
    if asked is None:
        return trained.tta, None
    if asked and not trained.tta:
        reason = "its data set is not mirror-safe or it trained without flips"
        return False, f"flip TTA off: run {trained.run_id} does not allow it ({reason})"
    return asked, None


def predict_paths(trained: Trained, paths: list[Path], *, top_k: int = 3,
                  batch_size: int = 64, tta: bool | None = None,
                  gradcam_dir: Path | None = None, on_error: Notify | None = None,
                  on_note: Callable[[str], None] | None = None,
                  limits: Limits | None = None) -> Report:
    """Top-k answers for every image under `paths`, batch by batch; heatmaps into
    `gradcam_dir` when given. Missing paths are refused before anything is read."""
    if not 1 <= top_k <= 1000:
        raise ConfigError(f"--top-k {top_k}: must be between 1 and 1000")
    if not 1 <= batch_size <= 65536:
        raise ConfigError(f"--batch-size {batch_size}: must be between 1 and 65536")
    check_inputs(paths)
    limits = limits or Limits.from_env()
    use_tta, note = resolve_tta(trained, tta)
    report = Report(trained.run_id, trained.weights.name, trained.epoch, use_tta)

    def noted(text: str) -> None:
        report.notes.append(text)
        if on_note:
            on_note(text)

    def failed(name: str, why: str) -> None:
        report.errors.append({"file": name, "error": why})
        report.stream.errors += 1
        if on_error:
            on_error(name, why)

    if note:
        noted(note)
    layer = None
    if gradcam_dir is not None:
        layer = choose_layer(trained.model, trained.image_size)
        gradcam_dir.mkdir(parents=True, exist_ok=True)
    unknown: dict[tuple[str, str], int] = {}
    labelled_roots: set[str] = set()
    truth: list[int] = []
    guess: list[int] = []
    taken: set[str] = set()
    for batch in _batches(trained, paths, batch_size, limits, report.stream, failed, noted):
        found = [label_of(entry.parts, trained.classes) if entry.root else (None, None)
                 for entry, _image in batch]
        answers = _answer(trained, batch, [label for label, _ in found], top_k, use_tta,
                          layer, gradcam_dir, taken)
        for (entry, _image), answer, (label, stranger) in zip(batch, answers, found,
                                                               strict=True):
            if label is not None:
                answer["label"] = label
                labelled_roots.add(entry.root)
                truth.append(trained.classes.index(label))
                guess.append(trained.classes.index(answer["top"][0]["class"]))
            elif stranger is not None:
                unknown[(entry.root, stranger)] = unknown.get((entry.root, stranger), 0) + 1
            report.predictions.append(answer)
        report.stream.drop(len(batch))
    for (root, folder), n in sorted(unknown.items()):
        if root in labelled_roots:
            noted(f"{root}: folder {folder!r} is not a class of run {trained.run_id}: its "
                  f"{n} image(s) are predicted but not scored")
    if truth:
        report.summary = classification_summary(np.asarray(truth), np.asarray(guess),
                                                trained.classes)
        report.summary["images"] = len(truth)
    return report


def _batches(trained: Trained, paths: list[Path], batch_size: int, limits: Limits,
             stream: Stream, failed: Notify, noted: Callable[[str], None],
             ) -> Iterator[list[tuple[Entry, np.ndarray]]]:
    """Decoded images at the data set's stored size, `batch_size` at a time."""
    height, width = trained.stored_size
    batch: list[tuple[Entry, np.ndarray]] = []
    for entry in entries(paths, limits):
        if isinstance(entry, Skipped):
            noted(f"{entry.root}: {entry.count} file(s) that are not images by name skipped")
            continue
        try:
            image = decode_rgb(entry.read(limits), limits.image_pixels, (width, height))
        except LabError as e:
            failed(entry.name, e.message)
            continue
        stream.take()
        batch.append((entry, image))
        if len(batch) == batch_size:
            stream.batches += 1
            yield batch
            batch = []
    if batch:
        stream.batches += 1
        yield batch


def _answer(trained: Trained, batch: list[tuple[Entry, np.ndarray]], labels: list[str | None],
            top_k: int, tta: bool, layer: TargetLayer | None, gradcam_dir: Path | None,
            taken: set[str]) -> list[dict[str, Any]]:
    model, dev = trained.model, trained.device
    pictures = np.stack([image for _entry, image in batch])
    images = torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous().to(dev)
    with torch.no_grad():  # not inference_mode: Grad-CAM takes these inputs again
        inputs = resize_normalize(images, trained.image_size, trained.mean, trained.std)
        if trained.config.channels_last:  # the memory layout the test loader gave the model
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(dev, trained.autocast_dtype):
            logits = model(inputs)
            if tta:
                logits = (logits + model(torch.flip(inputs, dims=[-1]))) / 2
        probs = logits.float().softmax(1)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    values, indices = values.cpu().numpy(), indices.cpu().numpy()
    answers = [{"file": entry.name,
                "top": [{"class": trained.classes[int(i)], "probability": float(p)}
                        for p, i in zip(values[row], indices[row], strict=True)]}
               for row, (entry, _image) in enumerate(batch)]
    if layer is not None and gradcam_dir is not None:
        cams = compute_cams(model, layer.module, inputs, [int(i[0]) for i in indices])
        for (entry, image), cam, answer, label in zip(batch, cams, answers, labels,
                                                      strict=True):
            best = answer["top"][0]
            text = f"pred {best['class']}, {100 * best['probability']:.0f}%"
            if label is not None:  # ASCII only, as the gallery's captions
                text = f"true {label}, {text}"
            path = gradcam_dir / heatmap_name(entry, taken)
            example_png(image, cam, text, label in (None, best["class"])).save(path)
            answer["heatmap"] = str(path)
    return answers

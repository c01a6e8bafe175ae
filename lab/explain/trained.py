"""A finished run's model, ready to answer: its weights, and everything its test images went
through on the way in (stored size, input size, mean/std, flip TTA or not), read from the run's
records and its data set's manifest. `lab predict` and `lab export` both start here, so a
prediction and an exported model see an image as the run's test did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lab.config import RunConfig
from lab.core.device import resolve_device, resolve_precision
from lab.core.models import build_model
from lab.data.augment import IMAGENET_MEAN, IMAGENET_STD
from lab.data.catalog import dataset_manifest
from lab.data.mirror import decide_mirror
from lab.errors import DataError
from lab.paths import default_data_dir
from lab.runs import RunDir
from lab.runs.checkpoint import load_model_state, load_weights


@dataclass
class Trained:
    """A run's model in eval mode on its device, with its preprocessing."""

    run_id: str
    model: nn.Module
    config: RunConfig
    classes: list[str]
    image_size: int  # the model's input side (the run's `image_size`)
    stored_size: tuple[int, int]  # (height, width) the data set stores its images at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tta: bool  # average each image's logits with its mirror's (the run's mirror decision)
    weights: Path  # the file the weights came from
    epoch: int  # the epoch those weights are from
    device: torch.device
    autocast_dtype: torch.dtype | None  # the run's precision on this device

    @property
    def level(self) -> int | None:
        return self.config.level


def load_trained(run: RunDir, weights: str = "last", device: str = "auto", *,
                 data_dir: Path | None = None) -> Trained:
    """Build `run`'s model with its `last` or `best` weights on `device`. The data set's
    manifest (in `data_dir`, default the usual cache) gives the stored image size and the
    mirror statement; a missing or broken record is one line (a LabError)."""
    config = run.config()
    loaded = load_weights(run, weights)
    manifest = dataset_manifest(config.dataset, data_dir or default_data_dir())
    classes = list(manifest["classes"])
    recorded = (run.result() or {}).get("classes")
    if recorded is not None and list(recorded) != classes:
        raise DataError(f"run {run.id} was tested on classes {', '.join(recorded)} but its data "
                        f"set {config.dataset!r} now has {', '.join(classes)}",
                        hint="import the data set the run was trained on again")
    dev = resolve_device(device)
    model = build_model(config.replace(weights="none"), len(classes))
    load_model_state(model, loaded.state["model"], loaded.path)
    model.to(dev).eval()
    height, width = (int(v) for v in manifest["image_size"])
    return Trained(run_id=run.id, model=model, config=config, classes=classes,
                   image_size=config.image_size, stored_size=(height, width),
                   mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   tta=decide_mirror(config, manifest).tta, weights=loaded.path,
                   epoch=int(loaded.state.get("epoch", 0)), device=dev,
                   autocast_dtype=resolve_precision(config.precision, dev))

"""Grad-CAM galleries for finished runs, on demand, from the run's checkpoint.

Everything a user can get wrong (no checkpoint, a class the run does not have, a method that
does not exist) is checked before anything is computed or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lab.checkpoint import load_latest, load_model_state
from lab.data.augment import resize_normalize
from lab.data.loader import DeviceLoader
from lab.errors import ConfigError, NotFoundError
from lab.gradcam import canonical_method, select_examples, write_gallery
from lab.models import build_model, gradcam_target_layer
from lab.prepare import split_data
from lab.runs import RunDir
from lab.train import evaluate, resolve_device


def explain_run(run: RunDir, data_dir: Path, *, n: int = 2, method: str = "gradcam",
                class_name: str | None = None, wrong_only: bool = False,
                device: str = "auto") -> dict[str, Any]:
    """Write (or replace) one gallery of `run` and return its index."""
    method = canonical_method(method)
    if not 1 <= n <= 1000:
        raise ConfigError(f"--n {n}: must be between 1 and 1000")
    loaded = load_latest(run)
    if loaded is None:
        raise NotFoundError(f"run {run.id} has no checkpoint: it never finished an epoch",
                            hint="train it first, or `lab resume` it")
    config = run.config()
    result = run.result() or {}
    known = result.get("classes")
    if class_name is not None and known is not None and class_name not in known:
        raise ConfigError(f"class {class_name!r} is not one of this run's classes: "
                          f"{', '.join(known)}")
    dev = resolve_device(device)
    state = loaded.state
    data, _split, test_x, test_y = split_data(config, data_dir)
    classes = data.classes
    if class_name is not None and class_name not in classes:
        raise ConfigError(f"class {class_name!r} is not one of: {', '.join(classes)}")
    model = build_model(config.replace(weights="none"), len(classes))
    load_model_state(model, state["model"], loaded.path)
    model.to(dev)
    loader = DeviceLoader.from_numpy(test_x, test_y, dev, batch_size=config.eval_batch_size,
                                     image_size=config.image_size)
    scored = evaluate(model, loader, None, want_predictions=True)
    examples = select_examples(test_y, scored["predictions"], scored["confidence"], len(classes),
                               n, classes.index(class_name) if class_name else None, wrong_only)
    index = torch.tensor([e.test_index for e in examples], dtype=torch.long, device=dev)
    images = loader.images[index]
    return write_gallery(run.path / "gradcam", model=model, layer=gradcam_target_layer(model),
                         images_uint8=images, inputs=resize_normalize(images, config.image_size),
                         examples=examples, classes=classes, method=method,
                         class_name=class_name, wrong_only=wrong_only)

"""One way to make a Grad-CAM gallery, whoever asks: the end of a run (from its test scores) and
`lab gradcam RUN` (from its last or best weights, on demand).

For the on-demand path everything a user can get wrong (no checkpoint, a class the run does not
have, a method that does not exist) is checked before anything is computed or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lab.core.device import resolve_device
from lab.core.evaluate import evaluate
from lab.core.models import build_model
from lab.core.prepare import split_data
from lab.data.augment import resize_normalize
from lab.data.loader import DeviceLoader
from lab.data.mirror import decide_mirror
from lab.errors import ConfigError
from lab.explain.gradcam import canonical_method, select_examples, write_gallery
from lab.explain.layers import choose_layer
from lab.runs import RunDir
from lab.runs.checkpoint import load_model_state, load_weights


def make_gallery(gradcam_dir: Path, model: nn.Module, test_x: np.ndarray, y_true: np.ndarray,
                 predictions: np.ndarray, confidence: np.ndarray, classes: list[str],
                 image_size: int, *, n: int, method: str = "gradcam",
                 class_name: str | None = None, wrong_only: bool = False,
                 layer: str | None = None) -> dict[str, Any]:
    """Choose the examples from the test scores, explain them and write the gallery.

    `test_x` is the whole test set as stored (N, H, W, 3 uint8, on the host); only the chosen
    images go to the model's device. `layer` names the target (default: chosen by size)."""
    target = choose_layer(model, image_size, layer)
    examples = select_examples(y_true, predictions, confidence, len(classes), n,
                               classes.index(class_name) if class_name else None, wrong_only)
    device = next(model.parameters()).device
    index = np.asarray([e.test_index for e in examples], dtype=np.int64)
    images = torch.from_numpy(np.ascontiguousarray(test_x[index])).permute(0, 3, 1, 2)
    images = images.contiguous().to(device)
    return write_gallery(gradcam_dir, model=model, layer=target,
                         images_uint8=images, inputs=resize_normalize(images, image_size),
                         examples=examples, classes=classes, method=method,
                         class_name=class_name, wrong_only=wrong_only)


def explain_run(run: RunDir, data_dir: Path, *, n: int = 2, method: str = "gradcam",
                class_name: str | None = None, wrong_only: bool = False,
                device: str = "auto", layer: str | None = None,
                weights: str = "last") -> dict[str, Any]:
    """Write (or replace) one gallery of `run` from its weights and return its index.
    `weights`: last (the newest checkpoint, or last.pt of a pruned run) or best (best.pt).
    `layer`: the target's name (`lab gradcam --layer`); by default the deepest whose map is
    still about 7×7 at the run's input size."""
    method = canonical_method(method)
    if not 1 <= n <= 1000:
        raise ConfigError(f"--n {n}: must be between 1 and 1000")
    loaded = load_weights(run, weights)
    config = run.config()
    result = run.result() or {}
    known = result.get("classes")
    if class_name is not None and known is not None and class_name not in known:
        raise ConfigError(f"class {class_name!r} is not one of this run's classes: "
                          f"{', '.join(known)}")
    if layer is not None:  # a wrong name is told before the data set is read
        choose_layer(build_model(config.replace(weights="none"), len(known or "ab")),
                     config.image_size, layer)
    dev = resolve_device(device)
    data, _split, test_x, test_y = split_data(config, data_dir)
    classes = data.classes
    if class_name is not None and class_name not in classes:
        raise ConfigError(f"class {class_name!r} is not one of: {', '.join(classes)}")
    model = build_model(config.replace(weights="none"), len(classes))
    load_model_state(model, loaded.state["model"], loaded.path)
    model.to(dev)
    loader = DeviceLoader.from_numpy(test_x, test_y, dev, batch_size=config.eval_batch_size,
                                     image_size=config.image_size)
    # predicted as the run's test was: with flip TTA only where the run's mirror decision allows
    scored = evaluate(model, loader, None, want_predictions=True,
                      tta_flip=decide_mirror(config, data.manifest).tta)
    return make_gallery(run.path / "gradcam", model, test_x, test_y, scored["predictions"],
                        scored["confidence"], classes, config.image_size, n=n, method=method,
                        class_name=class_name, wrong_only=wrong_only, layer=layer)

"""Evaluation: mean loss and accuracy over a loader, with predictions when asked.

With several processes each evaluates its contiguous chunk; `reduced` makes the result whole.
A run's validation and test both go through `evaluate_part`, so they are measured the same way
(the same flip TTA, or none, from the run's one mirror decision).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from lab.core.collectives import Dist, all_sum, gather_objects
from lab.core.device import autocast
from lab.data.loader import DeviceLoader

if TYPE_CHECKING:
    from lab.core.parts import Parts
    from lab.core.prepare import Prepared


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, autocast_dtype: torch.dtype | None,
             want_predictions: bool = False, tta_flip: bool = False) -> dict[str, Any]:
    """Mean loss and accuracy over a loader; predictions and confidences when asked.

    With `tta_flip` the logits of each image and its mirror are averaged."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    preds, confs = [], []
    for images, labels in loader:
        with autocast(device, autocast_dtype):
            logits = model(images)
            if tta_flip:
                logits = (logits + model(torch.flip(images, dims=[-1]))) / 2
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").double()
        pred = logits.argmax(1)
        correct += (pred == labels).sum()
        if want_predictions:
            preds.append(pred)
            confs.append(logits.softmax(1).amax(1))
    n = max(1, loader.num_samples)
    out: dict[str, Any] = {"loss": loss_sum.item() / n, "acc": correct.item() / n}
    if want_predictions:
        out["predictions"] = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, np.int64)
        out["confidence"] = torch.cat(confs).cpu().numpy() if confs else np.zeros(0)
    return out


def reduced(result: dict[str, Any], loader: DeviceLoader, dist: Dist) -> dict[str, Any]:
    """One process's evaluation of its chunk made whole: sums over the processes, and the
    predictions of every chunk in order (chunks are contiguous)."""
    if not dist.active:
        return result
    n = loader.num_samples
    loss, correct, total = all_sum(dist, result["loss"] * n, result["acc"] * n, float(n))
    out = {**result, "loss": loss / total, "acc": round(correct) / total}
    if "predictions" in result:
        parts = gather_objects(dist, (result["predictions"], result["confidence"]))
        out["predictions"] = np.concatenate([p for p, _ in parts])
        out["confidence"] = np.concatenate([c for _, c in parts])
    return out


def evaluate_part(parts: Parts, data: Prepared, part: Literal["val", "test"],
                  dist: Dist | None = None, want_predictions: bool = False) -> dict[str, Any]:
    """The run's validation or test, made whole over the processes. One path for both, so a
    validation accuracy predicts the test accuracy: flip TTA is on for both or for neither."""
    loader = data.val if part == "val" else data.test
    result = evaluate(parts.eval_net, loader, parts.autocast_dtype, want_predictions,
                      tta_flip=data.tta_flip)
    return reduced(result, loader, dist or Dist.single())

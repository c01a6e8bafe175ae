"""Which layer Grad-CAM weighs, chosen by the run's input size.

The last block is the usual target, but its map shrinks with the input: the custom CNN's last
block is 2×2 at 32 px and ResNet18's layer4 is 1×1, so every heatmap there is a few bilinear
blobs. The deepest stage whose map is still at least `MIN_SIDE` cells on a side keeps both
meaning and place. Map sizes come from one forward pass of a dummy image with hooks, so any
input size and any stage count is measured rather than assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lab.errors import ConfigError

MIN_SIDE = 7  # ResNet18's layer4 at 224 px, the size Grad-CAM was designed around


@dataclass(frozen=True)
class TargetLayer:
    name: str
    module: nn.Module
    size: tuple[int, int]  # (height, width) of its activation map at the run's input size


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The candidate layers, shallow to deep: the conv blocks of the custom CNN
    (`features.0` ...) or ResNet's four stages (`layer1` ... `layer4`)."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return [(f"features.{i}", block) for i, block in enumerate(features)]
    found = [(f"layer{i}", getattr(model, f"layer{i}", None)) for i in range(1, 5)]
    if any(module is None for _name, module in found):
        raise ConfigError(f"no Grad-CAM target layer known for {type(model).__name__}")
    return [(name, module) for name, module in found if module is not None]


def map_sizes(model: nn.Module, image_size: int) -> list[TargetLayer]:
    """Every candidate with its map size, measured on one blank image of `image_size`."""
    candidates = stages(model)
    sizes: dict[str, tuple[int, int]] = {}
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:])))
        for name, module in candidates]
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()  # batch norm must not learn from the blank image
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=param.device,
                              dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [TargetLayer(name, module, sizes[name]) for name, module in candidates]


def choose_layer(model: nn.Module, image_size: int, name: str | None = None) -> TargetLayer:
    """The named candidate, or the deepest whose map is at least MIN_SIDE on a side (the
    shallowest, largest map when none is). An unknown name is a ConfigError listing the valid
    ones."""
    layers = map_sizes(model, image_size)
    if name is not None:
        for layer in layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"--layer {name!r} is not a Grad-CAM layer of this model: choose "
                          + ", ".join(f"{t.name} ({t.size[0]}×{t.size[1]})" for t in layers))
    big = [t for t in layers if min(t.size) >= MIN_SIDE]
    return big[-1] if big else layers[0]

"""The two model families of the study, and where their pretrained weights come from.

Levels 1 and 2 fine-tune torchvision's ResNet18 from ImageNet weights with a new head for the
class count; Level 3 trains a small CNN from scratch. Pretrained weights are never fetched
silently: they come from torchvision's cache, a file the user names, or not at all (`none`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lab.config import RunConfig
from lab.errors import DataError, WeightsError

# torchvision's ResNet18_Weights.IMAGENET1K_V1; the file name carries the hash prefix it checks.
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


class CustomCNN(nn.Module):
    """Level 3: N × (Conv3×3-BN-ReLU-MaxPool2), then FC, ReLU, Dropout, FC; any input size.

    `convs` > 1 stacks more Conv-BN-ReLU layers in each block before its pooling (VGG style),
    for a deeper plain CNN of the same family; the study's network has one.
    """

    def __init__(self, num_classes: int, image_size: int,
                 channels: tuple[int, ...] = (32, 64, 128, 256), hidden: int = 512,
                 dropout: float = 0.5, convs: int = 1) -> None:
        super().__init__()
        blocks, c_in, side = [], 3, image_size
        for c_out in channels:
            layers: list[nn.Module] = []
            for k in range(convs):
                layers += [nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
            c_in, side = c_out, side // 2
        if side < 1:
            raise WeightsError(f"image size {image_size} is too small for {len(channels)} blocks")
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(config: RunConfig, num_classes: int) -> nn.Module:
    """The model a config asks for, with its weights loaded (ImageNet, a file, or none)."""
    if config.model == "cnn":
        model = CustomCNN(num_classes, config.image_size, config.cnn_channels,
                          config.cnn_hidden, config.dropout, config.cnn_convs)
        if config.weights not in ("none", ""):
            _load_into(model, _read_state_dict(Path(config.weights)), strict=True)
        return model
    return resnet18(num_classes, config.weights, config.dropout)


def resnet18(num_classes: int, weights: str = "none", dropout: float = 0.0) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None)  # 1000-way head, so an ImageNet state dict fits as is
    if weights == "imagenet":
        _load_into(model, imagenet_state_dict(), strict=True)
    elif weights not in ("none", ""):
        _load_into(model, _read_state_dict(Path(weights)), strict=False)
    head = nn.Linear(model.fc.in_features, num_classes)
    model.fc = nn.Sequential(nn.Dropout(dropout), head) if dropout > 0 else head
    return model


def weights_cache_path() -> Path:
    """Where torchvision keeps ImageNet weights (follows TORCH_HOME, like torch.hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(RESNET18_URL)


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet ResNet18 weights from the cache, downloading them only when the network allows."""
    path = weights_cache_path()
    if not path.exists():
        if os.environ.get("LAB_OFFLINE"):
            raise _missing_weights(path, "LAB_OFFLINE is set")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(RESNET18_URL, str(path), hash_prefix="f37072fd",
                                           progress=False)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
            raise _missing_weights(path, type(exc).__name__) from None
    return _read_state_dict(path)


def _missing_weights(path: Path, why: str) -> WeightsError:
    return WeightsError(
        f"ImageNet weights for resnet18 are not in {path} and could not be downloaded ({why})",
        hint=f"pass --weights FILE, copy resnet18-f37072fd.pth into {path.parent}, "
             "or train from scratch with --weights none",
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist",
                           hint="pass --weights imagenet, --weights none or an existing file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or not a torch file
        raise DataError(f"weights file {path} cannot be read: {type(exc).__name__}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"weights file {path} does not hold a state dict")
    return obj


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool) -> None:
    """Load matching tensors; refuse a file that leaves the backbone untouched or misshapen."""
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith("fc.")]
    if strict and (missing or len(usable) != len(state)):
        bad = missing or sorted(set(state) - set(usable))
        raise DataError(f"weights do not fit {type(model).__name__}: {len(bad)} tensors differ "
                           f"(first: {bad[0]})")
    if missing:
        raise DataError(f"the weights file misses {len(missing)} {type(model).__name__} backbone "
                        f"tensors (first: {missing[0]}): is it for another model?")
    model.load_state_dict(usable, strict=False)

"""The seed study's three levels as `RunConfig` presets, with the accuracies it reported.

The defaults must reproduce the study exactly (tests compare them field by field with its table):
CIFAR-10, 40,000/5,000 split of the official training set, Adam at 1e-4, batch 64, 5 epochs,
224×224 input. Only the model, the augmentation, dropout and weight decay differ between levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError, NotFoundError

_COMMON = dict(
    dataset="cifar10", image_size=224, optimizer="adam", lr=1e-4, batch_size=64, epochs=5,
    train_fraction=0.8, val_fraction=0.1, scheduler="none", label_smoothing=0.0,
)


@dataclass(frozen=True)
class Level:
    number: int
    title: str
    config: RunConfig
    seed_accuracy: float  # test accuracy (%) the study reported
    seed_note: str = ""


LEVELS: dict[int, Level] = {
    1: Level(
        1, "baseline",
        RunConfig(level=1, model="resnet18", weights="imagenet", augment=False, dropout=0.0,
                  weight_decay=0.0, **_COMMON),
        93.54, "93.13% in the study's comparison table",
    ),
    2: Level(
        2, "improved",
        RunConfig(level=2, model="resnet18", weights="imagenet", augment=True, dropout=0.5,
                  weight_decay=1e-4, **_COMMON),
        94.74,
    ),
    3: Level(
        3, "custom CNN",
        RunConfig(level=3, model="cnn", weights="none", augment=True, dropout=0.5,
                  weight_decay=1e-4, **_COMMON),
        65.89,
    ),
}


def level_config(level: int) -> RunConfig:
    """The preset of a level; a level that does not exist is a usage error."""
    if level not in LEVELS:
        raise ConfigError(f"level {level} does not exist: choose 1, 2 or 3 (see `lab levels`)")
    return LEVELS[level].config


def demo_configs(imagenet_available: bool, epochs: int = 5,
                 image_size: int = 32) -> list[RunConfig]:
    """The three presets on the bundled digits at a small size, on the CPU: about a minute.

    Only the data set, the input size, the device and (without cached ImageNet weights) the
    ResNet weights change; the caller says so out loud and each run's config records it.
    """
    weights = "imagenet" if imagenet_available else "none"
    configs = []
    for level in LEVELS.values():
        changes: dict = dict(dataset="digits", image_size=image_size, epochs=epochs, device="cpu")
        if level.config.model == "resnet18":
            changes["weights"] = weights
        configs.append(level.config.replace(**changes))
    return configs


def build_config(level: int | None, config_file: Path | None, options: dict[str, Any],
                 assignments: list[str]) -> RunConfig:
    """Preset (or config file) + named options + `--set KEY=VALUE`, validated once."""
    if config_file is not None:
        if not config_file.is_file():
            raise NotFoundError(f"config file {config_file} does not exist")
        config = RunConfig.from_json(config_file.read_text())
        if level is not None:
            raise ConfigError("give either --level or --config, not both")
    elif level is None:
        raise ConfigError("choose a level with --level 1|2|3 (or --config FILE)",
                          hint="see `lab levels`")
    else:
        config = level_config(level)
    changes = {k: v for k, v in options.items() if v is not None}
    if changes:
        config = config.replace(**changes)
    return config.with_overrides(assignments) if assignments else config

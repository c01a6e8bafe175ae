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


# Tuned recipes: same architecture family per level, a faster and more accurate way to train it.
# Level 3 is measured on the real CIFAR-10 copy on the CPU (README, "Tuned recipes"); the ResNet
# recipes are standard fine-tuning practice, not yet measured here (they need a GPU).
_TUNED: dict[int, dict[str, Any]] = {
    1: dict(optimizer="sgd", lr=0.01, momentum=0.9, scheduler="onecycle", label_smoothing=0.1,
            weight_decay=5e-4, batch_size=128, eval_batch_size=512, tta_flip=True),
    2: dict(optimizer="sgd", lr=0.01, momentum=0.9, scheduler="onecycle", label_smoothing=0.1,
            weight_decay=5e-4, batch_size=128, eval_batch_size=512, tta_flip=True, dropout=0.2,
            rotation=0.0, brightness=0.0, contrast=0.0, saturation=0.0),
    3: dict(image_size=32, cnn_channels=(24, 48, 96, 192), cnn_convs=2, cnn_hidden=256,
            dropout=0.0, optimizer="sgd", lr=0.08, momentum=0.9, scheduler="onecycle",
            label_smoothing=0.1, weight_decay=5e-4, batch_size=128, eval_batch_size=512,
            epochs=12, rotation=0.0, brightness=0.0, contrast=0.0, saturation=0.0,
            tta_flip=True, channels_last=True),
}
RECIPES = ("seed", "tuned")


def recipe_config(level: int, recipe: str = "seed") -> RunConfig:
    """A level's preset: the study's (`seed`) or the tuned recipe for the same model family."""
    if recipe not in RECIPES:
        raise ConfigError(f"recipe {recipe!r} does not exist: choose seed or tuned")
    config = level_config(level)
    return config.replace(**_TUNED[level]) if recipe == "tuned" else config


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
                 assignments: list[str], recipe: str = "seed") -> RunConfig:
    """Preset (the seed's or the tuned recipe, or a config file) + named options +
    `--set KEY=VALUE`, validated once: every field's type and range, and the memory the
    model and a batch need together (`RunConfig.check_memory`)."""
    if config_file is not None:
        if not config_file.is_file():
            raise NotFoundError(f"config file {config_file} does not exist")
        try:
            config = RunConfig.from_json(config_file.read_text(errors="replace"))
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc.message}", hint=exc.hint) from None
        if level is not None:
            raise ConfigError("give either --level or --config, not both")
    elif level is None:
        raise ConfigError("choose a level with --level 1|2|3 (or --config FILE)",
                          hint="see `lab levels`")
    else:
        config = recipe_config(level, recipe)
    changes = {k: v for k, v in options.items() if v is not None}
    if changes:
        config = config.replace(**changes)
    config = config.with_overrides(assignments) if assignments else config
    config.check_memory()  # the size of model and batch together, before anything is written
    return config

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
from lab.configfile import ConfigFile, read_config_file
from lab.errors import ConfigError

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


# `lab demo`'s epochs per model: about a minute on a 2-core CPU, where a ResNet18 epoch at
# 32 px costs about five of the custom CNN's (measured side by side). Batches of 32 give the
# 1,438 training digits 45 updates an epoch: Level 2 from scratch reached 78% test accuracy in
# one epoch at batch 32, 52% at the study's 64.
DEMO_EPOCHS = {"resnet18": 1, "cnn": 3}
DEMO_BATCH = 32
DEMO_GRADCAM = 1  # Grad-CAM examples per class and kind: half the usual gallery


def demo_configs(imagenet_available: bool, epochs: int | None = None,
                 image_size: int = 32) -> list[RunConfig]:
    """The three presets on the bundled digits at a small size, on the CPU: about a minute.

    Only the data set, the input size, the device, the epochs (`DEMO_EPOCHS` unless given),
    the batch, the gallery's size and (without cached ImageNet weights) the ResNet weights
    change; the
    caller says so out loud and each run's config records it.
    """
    weights = "imagenet" if imagenet_available else "none"
    configs = []
    for level in LEVELS.values():
        model = level.config.model
        changes: dict = dict(dataset="digits", image_size=image_size, device="cpu",
                             epochs=epochs or DEMO_EPOCHS.get(model, 1), batch_size=DEMO_BATCH,
                             gradcam=DEMO_GRADCAM)
        if model == "resnet18":
            changes["weights"] = weights
        configs.append(level.config.replace(**changes))
    return configs


def build_config(level: int | None, config_file: Path | ConfigFile | None,
                 options: dict[str, Any], assignments: list[str],
                 recipe: str = "seed") -> RunConfig:
    """The layers, each over the one before: the level's preset (the seed's or the tuned
    recipe) <- a config file's fields <- named options (`--epochs` ...) <- `--set KEY=VALUE`.
    Validated once: every field's type and range, the level's model (`check_level_model`),
    and the memory the model and a batch need together (`RunConfig.check_memory`). A file's
    own faults name its line (`config_from_file`); a study file's sweep is not applied here."""
    if config_file is not None:
        config = config_from_file(config_file, level, recipe)
    elif level is None:
        raise ConfigError("choose a level with --level 1|2|3 (or --config FILE)",
                          hint="see `lab levels`")
    else:
        config = recipe_config(level, recipe)
    changes = {k: v for k, v in options.items() if v is not None}
    if changes:
        config = config.replace(**changes)
    config = config.with_overrides(assignments) if assignments else config
    check_level_model(config)
    config.check_memory()  # the size of model and batch together, before anything is written
    return config


def config_from_file(source: Path | ConfigFile, level: int | None = None,
                     recipe: str = "seed") -> RunConfig:
    """A config file (TOML, JSON or YAML) over its level's preset: `level = 3` and
    `epochs = 1` is Level 3 (the CNN, its augmentation and weight decay) for one epoch, never
    RunConfig's defaults labelled L3. The level is the file's `level`, or `level` (--level)
    when the file has none; both given must agree. A `level` of none (`null`, or "none" in
    TOML, which has no null) is a custom run over RunConfig's defaults (Level 1's values); a
    file with no level at all and no --level is refused rather than guessed. Every error is
    one line naming the file, the line and the key at fault."""
    cf = source if isinstance(source, ConfigFile) else read_config_file(source)
    data = dict(cf.fields)
    if "level" not in data and level is None:
        raise cf.error('no "level": add level = 1, 2 or 3 (none for a custom run from the '
                       "defaults), or pass --level")
    try:
        chosen = _level_of(data["level"]) if "level" in data else level
    except ConfigError as exc:
        raise cf.error(exc.message, "level") from None
    if "level" in data and level is not None and chosen != level:
        raise cf.error(f"--level {level} contradicts the file's level "
                       f"{'none' if chosen is None else chosen}", "level")
    data["level"] = chosen
    base = RunConfig(level=None) if chosen is None else recipe_config(chosen, recipe)
    try:
        config = base.replace(**data)
        check_level_model(config)
    except ConfigError as exc:
        raise cf.error(exc.message, *_at_fault(cf, base, exc), hint=exc.hint) from None
    return config


def check_sweep(config: RunConfig, cf: ConfigFile) -> None:
    """Each value of a study file's `[sweep]`, alone over `config` (the file's config with the
    command's options), is a valid config of the same level; and no list repeats a value.
    Combinations are checked where the grid is expanded; this names the line of a bad value."""
    for name, values in cf.sweep.items():
        seen: list[Any] = []
        for value in values:
            try:
                one = config.replace(**{name: value})
                check_level_model(one)
            except ConfigError as exc:
                raise cf.error(f"sweep {exc.message}", "sweep", name, hint=exc.hint) from None
            if getattr(one, name) in seen:
                raise cf.error(f"sweep {name} lists {value!r} twice", "sweep", name)
            seen.append(getattr(one, name))


def _at_fault(cf: ConfigFile, base: RunConfig, exc: ConfigError) -> tuple[str, ...]:
    """The file's key to blame for `exc`: the field it names, when the file sets it; else (a
    check across fields, e.g. batch_size and the file's nproc) the first of the file's fields,
    in line order, that makes the preset fail when laid over it one after another."""
    if exc.key in cf.fields:
        return (exc.key,)
    config = base
    for name in sorted(cf.fields, key=lambda k: cf.line(k) or 0):
        try:
            config = config.replace(**{name: cf.fields[name]})
            check_level_model(config)
        except ConfigError:
            return (name,)
    return ()


def _level_of(value: Any) -> int | None:
    if value is None or value == "none":
        return None
    if type(value) is not int or value not in LEVELS:
        raise ConfigError(f"level={value!r}: must be 1, 2, 3 or none")
    return value


def check_level_model(config: RunConfig) -> None:
    """A level names a model: a config saying Level 3 with a ResNet18 (or Level 1 with the CNN)
    would be compared as that level while being another network, so it is refused."""
    if config.level in LEVELS:
        preset = LEVELS[config.level]
        if config.model != preset.config.model:
            raise ConfigError(
                f"model={config.model!r} contradicts level {config.level} "
                f"({preset.title}: {preset.config.model})",
                hint="drop model, or make it a custom run with level none", key="model")

"""RunConfig validation and the seed presets, field by field against the study's table."""

from __future__ import annotations

import json

import pytest

from lab.config import RunConfig
from lab.errors import ConfigError
from lab.levels import LEVELS, demo_configs, level_config

# The study's table (../shared/DESIGN.md, "The seed's three levels"), written out independently.
COMMON = {"dataset": "cifar10", "image_size": 224, "optimizer": "adam", "lr": 1e-4,
          "batch_size": 64, "epochs": 5, "train_fraction": 0.8, "val_fraction": 0.1,
          "scheduler": "none", "label_smoothing": 0.0}
SEED_TABLE = {
    1: {"model": "resnet18", "weights": "imagenet", "augment": False, "dropout": 0.0,
        "weight_decay": 0.0},
    2: {"model": "resnet18", "weights": "imagenet", "augment": True, "dropout": 0.5,
        "weight_decay": 1e-4},
    3: {"model": "cnn", "weights": "none", "augment": True, "dropout": 0.5,
        "weight_decay": 1e-4},
}


@pytest.mark.parametrize("level", [1, 2, 3])
def test_presets_match_the_seed_table(level: int) -> None:
    config = level_config(level).to_dict()
    expected = {**COMMON, **SEED_TABLE[level], "level": level}
    for key, value in expected.items():
        assert config[key] == value, f"level {level}: {key}"
    # 50,000 official training images -> 40,000 train and 5,000 validation
    assert round(50_000 * config["train_fraction"]) == 40_000
    assert round(50_000 * config["val_fraction"]) == 5_000


def test_levels_share_everything_but_model_augmentation_dropout_wd() -> None:
    dicts = [LEVELS[n].config.to_dict() for n in (1, 2, 3)]
    differing = {k for k in dicts[0] if len({json.dumps(d[k]) for d in dicts}) > 1}
    assert differing == {"level", "model", "weights", "augment", "dropout", "weight_decay"}


def test_seed_accuracies_are_recorded() -> None:
    assert [LEVELS[n].seed_accuracy for n in (1, 2, 3)] == [93.54, 94.74, 65.89]


def test_json_round_trip_and_unknown_keys() -> None:
    config = level_config(2).replace(epochs=3, cnn_channels=(8, 16, 16, 32))
    assert RunConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.from_dict({**config.to_dict(), "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{")


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 0}, "epochs=0"),
    ({"batch_size": -1}, "batch_size=-1"),
    ({"level": 4}, "level=4"),
    ({"lr": 0}, "lr=0"),
    ({"hflip": 1.5}, "hflip"),
    ({"rotation": -1}, "rotation"),
    ({"dropout": 1.0}, "dropout"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"device": "gpu"}, "device"),
    ({"dataset": "../etc"}, "dataset"),
    ({"train_fraction": 0.95}, "val_fraction"),
    ({"model": "cnn", "image_size": 8}, "too small"),
    ({"patience": -1}, "patience=-1"),
    ({"patience": 10001}, "patience=10001"),
    ({"test_on": "worst"}, "test_on='worst': must be one of last, best"),
    ({"test_on": ""}, "test_on"),
])
def test_out_of_range_values_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        level_config(1).replace(**changes)


def test_set_overrides_parse_by_field_type() -> None:
    config = level_config(3).with_overrides(
        ["epochs=2", "augment=off", "lr=3e-4", "cnn-channels=8,16,16,32", "weights=none"])
    assert (config.epochs, config.augment, config.lr, config.cnn_channels) == (
        2, False, 3e-4, (8, 16, 16, 32))
    for bad in (["epochs=two"], ["augment=maybe"], ["nosuchkey=1"], ["epochs"], ["epochs=2.5"]):
        with pytest.raises(ConfigError):
            level_config(3).with_overrides(bad)


def test_early_stopping_and_best_weights_are_off_by_default_and_set_by_name() -> None:
    """The old default stays: every epoch trained, the last weights tested, nothing pruned."""
    for level in (1, 2, 3):
        config = level_config(level)
        assert (config.patience, config.test_on, config.prune) == (0, "last", False)
    config = level_config(3).with_overrides(["patience=3", "test_on=best", "prune=true"])
    assert (config.patience, config.test_on, config.prune) == (3, "best", True)
    assert RunConfig.from_dict({k: v for k, v in config.to_dict().items()
                                if k not in ("patience", "test_on", "prune")}) == level_config(3)


def test_level_that_does_not_exist() -> None:
    with pytest.raises(ConfigError, match="level 4 does not exist"):
        level_config(4)


def test_demo_configs_use_digits_on_cpu_and_say_where_weights_come_from() -> None:
    offline = demo_configs(imagenet_available=False)
    assert [c.level for c in offline] == [1, 2, 3]
    assert all(c.dataset == "digits" and c.device == "cpu" for c in offline)
    assert [c.weights for c in offline] == ["none", "none", "none"]
    assert [c.weights for c in demo_configs(imagenet_available=True)][:2] == ["imagenet"] * 2


def test_demo_configs_train_each_model_its_demo_epochs_unless_told() -> None:
    """The demo's budget: fewer epochs for the costly ResNet18 levels; `--epochs` sets all."""
    from lab.levels import DEMO_BATCH, DEMO_EPOCHS, DEMO_GRADCAM

    configs = demo_configs(imagenet_available=False)
    assert [c.epochs for c in configs] == [DEMO_EPOCHS[c.model] for c in configs]
    assert DEMO_EPOCHS["resnet18"] < DEMO_EPOCHS["cnn"]
    assert all(c.gradcam == DEMO_GRADCAM > 0 and c.image_size == 32 and
               c.batch_size == DEMO_BATCH for c in configs)
    assert [c.epochs for c in demo_configs(False, epochs=4, image_size=24)] == [4, 4, 4]
    # the levels still differ as the study's do: the model, augmentation, dropout
    assert [(c.model, c.augment) for c in configs] == [
        ("resnet18", False), ("resnet18", True), ("cnn", True)]


def test_tuned_recipes_keep_each_level_s_model_family() -> None:
    from lab.levels import build_config, recipe_config

    for level in (1, 2, 3):
        seed, tuned = level_config(level), recipe_config(level, "tuned")
        assert (tuned.model, tuned.weights, tuned.augment, tuned.level) == (
            seed.model, seed.weights, seed.augment, seed.level)
        assert tuned != seed
    assert recipe_config(3, "seed") == level_config(3)
    tuned3 = build_config(3, None, {"epochs": 2}, ["seed=4"], recipe="tuned")
    assert (tuned3.epochs, tuned3.seed, tuned3.cnn_convs, tuned3.image_size) == (2, 4, 2, 32)
    with pytest.raises(ConfigError, match="recipe 'fast' does not exist"):
        recipe_config(3, "fast")

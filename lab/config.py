"""`RunConfig`: every knob of a run in one validated dataclass.

A run is fully described by its config: it is saved as `config.json` in the run directory, read
back for resume, and compared field by field with the seed's presets in the tests. Unknown keys
and out-of-range values are refused here, once, so the CLI, the queue and the TUI all validate
the same way.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, fields
from typing import Any

from lab.errors import ConfigError

MODELS = ("resnet18", "cnn")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
_DATASET_RE = re.compile(r"^(imagefolder:.+|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run computes (and a few knobs that only decide how fast)."""

    level: int | None = None  # 1, 2, 3 for the seed presets; None for a custom run
    model: str = "resnet18"  # resnet18 | cnn
    weights: str = "imagenet"  # imagenet | none | path to a state dict
    dataset: str = "cifar10"  # a cached name, "digits", or "imagefolder:PATH"
    image_size: int = 224
    # augmentation (training batches only; validation and test are only resized and normalized)
    augment: bool = False
    hflip: float = 0.5  # probability
    rotation: float = 10.0  # max degrees
    crop_padding: float = 4.0  # max shift in pixels of the stored image (RandomCrop padding)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    # model
    dropout: float = 0.0
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    cnn_hidden: int = 512
    cnn_convs: int = 1  # Conv-BN-ReLU layers per block before its MaxPool (the study: 1)
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    scheduler: str = "none"
    label_smoothing: float = 0.0
    tta_flip: bool = False  # average the predictions for each test image and its mirror
    batch_size: int = 64
    eval_batch_size: int = 256
    epochs: int = 5
    seed: int = 0
    # the split: fractions of the training pool; one split_seed gives every level the same split
    split_seed: int = 42
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    # execution
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast on CUDA when supported, fp32 elsewhere
    channels_last: bool = False
    compile: bool = False  # torch.compile the training module (Grad-CAM uses the plain one)
    nproc: int = 1  # data-parallel processes (torchrun + DDP); one GPU each on CUDA
    sync_bn: bool = False  # synchronise BatchNorm statistics across processes (GPUs only)
    log_every: int = 20  # steps between step events in metrics.jsonl
    gradcam: int = 2  # Grad-CAM images per class and kind (right, wrong) after a run; 0: none
    notes: str = ""

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> RunConfig:
        """Build from a plain dict. Input from a person (`--config`) is `strict`: an unknown key
        is refused. A record on disk is read leniently: a key written by another version of
        lab is dropped, so older and newer runs stay readable; values are still validated."""
        if not isinstance(data, dict):
            raise ConfigError("a run config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and strict:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**{k: _coerce(k, v) for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed; values are coerced and the result validated."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply `key=value` strings (the CLI's `--set`), parsing each value by the field's type."""
        changes: dict[str, Any] = {}
        for item in assignments:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
            changes[key] = value.strip()
        return self.replace(**changes)

    # ---- derived --------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"L{self.level}" if self.level else "custom"

    def augmentation_summary(self) -> str:
        if not self.augment:
            return "none"
        parts = []
        if self.hflip:
            parts.append("flip")
        if self.rotation:
            parts.append(f"rot {self.rotation:g}°")
        if self.crop_padding:
            parts.append(f"crop {self.crop_padding:g}")
        if self.brightness or self.contrast or self.saturation:
            parts.append("jitter")
        return ", ".join(parts) or "none"

    # ---- validation -----------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        if self.level is not None and self.level not in (1, 2, 3):
            raise bad("level", "must be 1, 2 or 3")
        if self.model not in MODELS:
            raise bad("model", f"must be one of {', '.join(MODELS)}")
        if not self.weights:
            raise bad("weights", "must be imagenet, none or a file path")
        if not _DATASET_RE.match(self.dataset):
            raise bad("dataset", "must be a data set name, digits, or imagefolder:PATH")
        if not 8 <= self.image_size <= 1024:
            raise bad("image_size", "must be between 8 and 1024")
        if self.model == "cnn" and self.image_size < 2 ** len(self.cnn_channels):
            raise bad("image_size", f"is too small for {len(self.cnn_channels)} pooling blocks")
        if not 0.0 <= self.hflip <= 1.0:
            raise bad("hflip", "is a probability, between 0 and 1")
        for name in ("rotation", "crop_padding", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")
        if not float(self.crop_padding).is_integer():
            raise bad("crop_padding", "must be a whole number of pixels")
        if self.rotation > 180:
            raise bad("rotation", "must be at most 180 degrees")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if not self.cnn_channels or any(c < 1 for c in self.cnn_channels):
            raise bad("cnn_channels", "must be a list of positive channel counts")
        if not 1 <= self.cnn_convs <= 4:
            raise bad("cnn_convs", "must be between 1 and 4")
        if self.cnn_hidden < 1:
            raise bad("cnn_hidden", "must be positive")
        if not 1 <= self.nproc <= 1024:
            raise bad("nproc", "must be between 1 and 1024")
        if self.batch_size % self.nproc:
            raise bad("batch_size", f"must be a multiple of nproc ({self.nproc}): the global "
                      "batch is split evenly over the processes")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if not 0.0 < self.lr <= 10.0:
            raise bad("lr", "must be in (0, 10]")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "must be in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must not be negative")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "must be in [0, 1)")
        if not 1 <= self.batch_size <= 65536:
            raise bad("batch_size", "must be between 1 and 65536")
        if not 1 <= self.eval_batch_size <= 65536:
            raise bad("eval_batch_size", "must be between 1 and 65536")
        if not 1 <= self.epochs <= 10000:
            raise bad("epochs", "must be between 1 and 10000")
        if self.seed < 0 or self.split_seed < 0:
            raise bad("seed" if self.seed < 0 else "split_seed", "must not be negative")
        if not 0.0 < self.train_fraction < 1.0:
            raise bad("train_fraction", "must be in (0, 1)")
        if not 0.0 < self.val_fraction < 1.0 or self.train_fraction + self.val_fraction >= 1.0:
            raise bad("val_fraction", "must be in (0, 1) with train_fraction + val_fraction < 1")
        if not _DEVICE_RE.match(self.device):
            raise bad("device", "must be auto, cpu, cuda, cuda:N or mps")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        if not 1 <= self.log_every <= 100000:
            raise bad("log_every", "must be between 1 and 100000")
        if not 0 <= self.gradcam <= 1000:
            raise bad("gradcam", "must be between 0 and 1000")


_FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


def _coerce(name: str, value: Any) -> Any:
    """Turn CLI strings and JSON values into the field's type, with one clear line on failure."""
    kind = str(_FIELD_TYPES[name])
    try:
        if kind == "tuple[int, ...]":
            if isinstance(value, str):
                value = [v for v in re.split(r"[,\s]+", value.strip("[]() ")) if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_as_int(v) for v in value)
        if value is None:
            if "None" in kind:
                return None
            raise TypeError
        if kind.startswith("int"):
            if isinstance(value, str) and value.strip().lower() in ("none", "") and "None" in kind:
                return None
            return _as_int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            raise TypeError
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected {kind.replace(' | None', '')}") from None
    return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


__all__ = ["RunConfig", "config_fields"]

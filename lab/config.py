"""`RunConfig`: every knob of a run in one validated dataclass.

A run is fully described by its config: it is saved as `config.json` in the run directory, read
back for resume, and compared field by field with the seed's presets in the tests. Unknown keys
and out-of-range values are refused here, once, so the CLI, the queue and the TUI all validate
the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any

from lab.errors import ConfigError

MODELS = ("resnet18", "cnn")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TEST_ON = ("last", "best")
DATA_ON = ("auto", "device", "host", "disk")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
_STUDY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DATASET_RE = re.compile(r"^(imagefolder:.+|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")

# The range of every numeric field, checked whenever a config is built (a person's options, a
# config file, a record read back): a value outside it could only fail later, mid-run.
MAX_SEED = 2**63 - 1  # torch.manual_seed takes < 2**64; numpy's generators any int >= 0
MAX_CNN_BLOCKS, MAX_CNN_CHANNELS = 10, 4096
INT_RANGES: dict[str, tuple[int, int]] = {
    "image_size": (8, 1024), "cnn_hidden": (1, 65536), "cnn_convs": (1, 4),
    "batch_size": (1, 65536), "eval_batch_size": (1, 65536), "epochs": (1, 10000),
    "seed": (0, MAX_SEED), "split_seed": (0, MAX_SEED), "nproc": (1, 1024),
    "log_every": (1, 100000), "gradcam": (0, 1000), "patience": (0, 10000),
}
# (low, high, bounds): "[]" closed, "[)" / "(]" / "()" open at that end. Floats are finite.
FLOAT_RANGES: dict[str, tuple[float, float, str]] = {
    "hflip": (0, 1, "[]"), "rotation": (0, 180, "[]"), "crop_padding": (0, 1024, "[]"),
    "brightness": (0, 10, "[]"), "contrast": (0, 10, "[]"), "saturation": (0, 10, "[]"),
    "dropout": (0, 1, "[)"), "lr": (0, 10, "(]"), "momentum": (0, 1, "[)"),
    "weight_decay": (0, 10, "[]"), "label_smoothing": (0, 1, "[)"),
    "train_fraction": (0, 1, "()"), "val_fraction": (0, 1, "()"),
    "system_every": (0, 3600, "[]"),
}
STR_LIMITS: dict[str, int] = {"model": 64, "weights": 4096, "dataset": 4096, "optimizer": 64,
                              "scheduler": 64, "device": 64, "precision": 64, "data_on": 64,
                              "notes": 10000, "study": 64, "test_on": 64}
# Fields that do not change what training computes: they may differ between a checkpoint and
# config.json on resume (another device, another evaluation batch, fewer Grad-CAM images).
NOT_TRAINING = frozenset({"device", "eval_batch_size", "log_every", "gradcam", "notes",
                          "compile", "channels_last", "study", "system_every",
                          "tensorboard", "test_on", "prune", "data_on"})
# Fields that decide the shapes of the model's weights (and image_size, for the CNN's FC layer):
# a checkpoint that differs in one holds another model, which no resume can load.
MODEL_SHAPE = frozenset({"model", "cnn_channels", "cnn_hidden", "cnn_convs"})
# torchvision's ResNet18 without its head, and the activations per input pixel it keeps for the
# backward pass (the outputs of its layers, measured: 149 floats per pixel from 32 to 512 px).
RESNET18_BACKBONE_PARAMS = 11_176_512
RESNET18_KEPT_PER_PIXEL = 150
MEMORY_ENV = "LAB_MAX_MEMORY_GIB"
DEFAULT_MAX_MEMORY_GIB = 128.0


def max_memory_bytes() -> int:
    """The most memory a config may need by `RunConfig.memory_estimate`: LAB_MAX_MEMORY_GIB
    (GiB), else 128 GiB, more than one accelerator of today holds."""
    raw = os.environ.get(MEMORY_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_MAX_MEMORY_GIB
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 2**20):
        raise ConfigError(f"{MEMORY_ENV}={raw!r} must be a number of GiB between 0 and 1048576")
    return int(value * 2**30)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run computes (and a few knobs that only decide how fast).

    What each field does is `FIELD_HELP` (below): one text for this class, the config templates
    (`lab levels --format toml`) and anyone else who explains a field.
    """

    level: int | None = None
    model: str = "resnet18"
    weights: str = "imagenet"
    dataset: str = "cifar10"
    image_size: int = 224
    # augmentation (training batches only; validation and test are only resized and normalized)
    augment: bool = False
    hflip: float = 0.5
    rotation: float = 10.0
    crop_padding: float = 4.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    # model
    dropout: float = 0.0
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    cnn_hidden: int = 512
    cnn_convs: int = 1
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    label_smoothing: float = 0.0
    tta_flip: bool = False
    batch_size: int = 64
    eval_batch_size: int = 256
    epochs: int = 5
    patience: int = 0
    test_on: str = "last"
    seed: int = 0
    # the split: fractions of the training pool; one split_seed gives every level the same split
    split_seed: int = 42
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    # execution
    device: str = "auto"
    precision: str = "auto"
    data_on: str = "auto"
    channels_last: bool = False
    compile: bool = False
    nproc: int = 1
    sync_bn: bool = False
    log_every: int = 20
    gradcam: int = 2
    system_every: float = 5.0
    tensorboard: bool = False
    prune: bool = False
    notes: str = ""
    study: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):  # the declared type, strictly: whoever built us, from whatever
            object.__setattr__(self, f.name, _typed(f.name, getattr(self, f.name)))
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
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}", key=unknown[0])
        return cls(**{k: _coerce(k, v) for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(cls.from_json_object(text))

    @staticmethod
    def from_json_object(text: str) -> dict[str, Any]:
        """The JSON object of a config document, unvalidated (a file may hold only some
        fields: `lab.levels.config_from_file` lays them over a preset)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
            raise ConfigError(f"config is not usable JSON: {type(exc).__name__}: "
                              f"{str(exc)[:80]}") from None
        if not isinstance(data, dict):
            raise ConfigError("a run config must be a JSON object")
        return data

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed; values are coerced and the result validated."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}", key=unknown[0])
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
            return ConfigError(f"{name}={_show(getattr(self, name))}: {why}", key=name)

        if self.level is not None and self.level not in (1, 2, 3):
            raise bad("level", "must be 1, 2 or 3")
        for name, (low, high) in INT_RANGES.items():
            if not low <= getattr(self, name) <= high:
                raise bad(name, f"must be between {low} and {high}")
        for name, (low, high, bounds) in FLOAT_RANGES.items():
            value = getattr(self, name)
            above = low < value if bounds[0] == "(" else low <= value
            below = value < high if bounds[1] == ")" else value <= high
            if not (above and below):
                raise bad(name, f"must be in {bounds[0]}{low:g}, {high:g}{bounds[1]}")
        for name, longest in STR_LIMITS.items():
            value = getattr(self, name)
            if len(value) > longest or "\0" in value:
                raise bad(name, f"must be at most {longest} characters, without NUL")
        if self.model not in MODELS:
            raise bad("model", f"must be one of {', '.join(MODELS)}")
        if not self.weights:
            raise bad("weights", "must be imagenet, none or a file path")
        if self.study and not _STUDY_RE.match(self.study):
            raise bad("study", "must be a name of letters, digits, '.', '_' or '-' (at most 64),"
                      " starting with a letter or digit")
        if not _DATASET_RE.match(self.dataset):
            raise bad("dataset", "must be a data set name, digits, or imagefolder:PATH")
        if not 1 <= len(self.cnn_channels) <= MAX_CNN_BLOCKS or \
                any(not 1 <= c <= MAX_CNN_CHANNELS for c in self.cnn_channels):
            raise bad("cnn_channels", f"must be 1 to {MAX_CNN_BLOCKS} channel counts, each "
                      f"between 1 and {MAX_CNN_CHANNELS}")
        if self.model == "cnn" and self.image_size < 2 ** len(self.cnn_channels):
            raise bad("image_size", f"is too small for {len(self.cnn_channels)} pooling blocks")
        if not float(self.crop_padding).is_integer():
            raise bad("crop_padding", "must be a whole number of pixels")
        if self.batch_size % self.nproc:
            raise bad("batch_size", f"must be a multiple of nproc ({self.nproc}): the global "
                      "batch is split evenly over the processes")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if self.train_fraction + self.val_fraction >= 1.0:
            raise bad("val_fraction", "must be in (0, 1) with train_fraction + val_fraction < 1")
        if not _DEVICE_RE.match(self.device):
            raise bad("device", "must be auto, cpu, cuda, cuda:N or mps")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.test_on not in TEST_ON:
            raise bad("test_on", f"must be one of {', '.join(TEST_ON)}")
        if self.data_on not in DATA_ON:
            raise bad("data_on", f"must be one of {', '.join(DATA_ON)}")

    # ---- resources --------------------------------------------------------------------------
    def parameter_count(self, num_classes: int = 10) -> int:
        """The model's parameters, counted from the config alone (no torch): what
        `lab.core.models.build_model` will allocate."""
        if self.model != "cnn":
            return RESNET18_BACKBONE_PARAMS + 512 * num_classes + num_classes
        total, c_in, side = 0, 3, self.image_size
        for c_out in self.cnn_channels:
            for k in range(self.cnn_convs):
                total += 9 * (c_in if k == 0 else c_out) * c_out + 2 * c_out  # conv, BN
            c_in, side = c_out, side // 2
        flat = c_in * side * side
        return total + flat * self.cnn_hidden + self.cnn_hidden + \
            self.cnn_hidden * num_classes + num_classes

    def memory_estimate(self, num_classes: int = 10) -> int:
        """Bytes one process needs at fp32, roughly: the weights with their gradients and
        optimizer state, plus the activations kept for the backward pass of one training batch
        (or one evaluation batch's two largest layers, if that is more). A lower bound in
        practice, so a config over the limit cannot fit any device."""
        params = self.parameter_count(num_classes)
        states = 4 if self.optimizer in ("adam", "adamw") else 3  # weights, grads, moments
        side = self.image_size
        if self.model == "cnn":
            kept, peak, t = 3 * side * side, 3 * side * side, side
            for c in self.cnn_channels:
                kept += self.cnn_convs * 2 * c * t * t + c * (t // 2) ** 2  # conv+BN, pool
                peak = max(peak, c * t * t)
                t //= 2
        else:
            kept, peak = RESNET18_KEPT_PER_PIXEL * side * side, 16 * side * side
        train = states * params + (self.batch_size // self.nproc) * kept
        evaluate = params + self.eval_batch_size * 2 * peak
        return 4 * max(train, evaluate)

    def check_memory(self, num_classes: int = 10) -> None:
        """Refuse a config whose `memory_estimate` exceeds the limit (`max_memory_bytes`):
        such a run could only die later, out of memory or in an allocator's overflow."""
        need, limit = self.memory_estimate(num_classes), max_memory_bytes()
        if need > limit:
            shape = (f"{self.parameter_count(num_classes) / 1e6:,.0f} M parameters, batch "
                     f"{self.batch_size // self.nproc} at {self.image_size}x{self.image_size}")
            raise ConfigError(
                f"this config needs about {need / 2**30:,.0f} GiB ({shape}), over the limit "
                f"of {limit / 2**30:g} GiB",
                hint="lower batch_size, eval_batch_size, image_size, cnn_hidden or "
                     f"cnn_channels; {MEMORY_ENV} raises the limit")

    def training_differences(self, other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields that change what training computes and differ between `other` (a config as
        a checkpoint saved it) and this config: {field: (other's value, ours)}. A field
        missing from `other` (an older lab) is compared with its default."""
        ours = self.to_dict()
        defaults = RunConfig().to_dict()
        diff = {}
        for name in config_fields():
            if name in NOT_TRAINING:
                continue
            theirs = other.get(name, defaults[name])
            if isinstance(theirs, tuple):
                theirs = list(theirs)
            if theirs != ours[name]:
                diff[name] = (theirs, ours[name])
        return diff


# What each field does, in RunConfig's order: the one text the templates and the docs use.
FIELD_HELP: dict[str, str] = {
    "level": "1, 2, 3: the seed study's presets; none: a custom run from the defaults",
    "model": "resnet18 | cnn (Level 3's custom CNN)",
    "weights": "imagenet | none (from scratch) | path to a state dict",
    "dataset": "cifar10 | digits (bundled) | a cached name | imagefolder:PATH",
    "image_size": "input side in pixels (images are resized to it)",
    "augment": "augment training batches (validation and test are only resized and normalized)",
    "hflip": "probability of a horizontal flip; 0 also says never mirror (no flip TTA)",
    "rotation": "largest rotation, in degrees",
    "crop_padding": "largest shift in pixels of the stored image (RandomCrop padding)",
    "brightness": "colour jitter: largest relative change of brightness",
    "contrast": "colour jitter: largest relative change of contrast",
    "saturation": "colour jitter: largest relative change of saturation",
    "dropout": "dropout before the classifier (0: none)",
    "cnn_channels": "the custom CNN's channels, one per block (each block halves the image)",
    "cnn_hidden": "units of the custom CNN's hidden fully connected layer",
    "cnn_convs": "Conv-BN-ReLU layers per block before its MaxPool (the study: 1)",
    "optimizer": "adam | adamw | sgd",
    "lr": "learning rate (the peak, with a schedule)",
    "momentum": "momentum (sgd only)",
    "weight_decay": "weight decay",
    "scheduler": "none | cosine | onecycle",
    "label_smoothing": "label smoothing of the cross-entropy loss",
    "tta_flip": "validation and test average each image with its mirror, if safe",
    "batch_size": "training batch, all processes together",
    "eval_batch_size": "validation and test batch",
    "epochs": "passes over the training set",
    "patience": "stop when val_acc has not improved for this many epochs; 0: never",
    "test_on": "the weights tested: last (the final epoch's) or best (best.pt)",
    "seed": "training seed (initialisation, batch order, augmentation); not the split",
    "split_seed": "seed of the train/validation split: one for every level, so levels compare",
    "train_fraction": "share of the training pool that trains",
    "val_fraction": "share of the training pool that validates",
    "device": "auto | cpu | cuda | cuda:N | mps",
    "precision": "auto (bf16 autocast on CUDA when supported, fp32 elsewhere) | fp32 | bf16 | fp16",
    "data_on": "where the images wait for their batch: auto | device (all on the training "
               "device) | host (host memory, pinned on CUDA) | disk (the memory-mapped cache); "
               "results are the same",
    "channels_last": "channels-last memory layout (faster convolutions on GPUs)",
    "compile": "torch.compile the training module (Grad-CAM uses the plain one)",
    "nproc": "data-parallel processes (torchrun + DDP); one GPU each on CUDA",
    "sync_bn": "synchronise BatchNorm statistics across processes (GPUs only)",
    "log_every": "steps between step events in metrics.jsonl",
    "gradcam": "Grad-CAM images per class and kind (right, wrong) after a run; 0: none",
    "system_every": "seconds between CPU/GPU samples into system.jsonl; 0: none",
    "tensorboard": "also write TensorBoard event files into runs/<id>/tb/ (tensorboard extra)",
    "prune": "a run that ends well drops its resume checkpoints (as lab runs --prune)",
    "notes": "free text kept with the run",
    "study": "the study this run belongs to (configs and seeds queued together); empty: none",
}
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
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={_show(value)}: expected {kind.replace(' | None', '')}",
                          key=name) from None
    return value


def _typed(name: str, value: Any) -> Any:
    """`value` as the field's declared type, refused unless it already is one (a float field
    takes an int; a tuple field a list); floats must be finite. No parsing: see `_coerce`."""
    kind = str(_FIELD_TYPES[name])
    ok: bool
    if kind == "tuple[int, ...]":
        ok = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
        value = tuple(value) if ok else value
    elif kind.startswith("int"):
        ok = _is_int(value) or (value is None and "None" in kind)
    elif kind == "float":
        ok = _is_int(value) or isinstance(value, float)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                ok = False
            if ok and not math.isfinite(value):
                raise ConfigError(f"{name}={_show(value)}: must be a finite number", key=name)
    elif kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{name}={_show(value)}: expected {kind.replace(' | None', '')}",
                          key=name)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value for an error line: its repr, cut short (a 5000-digit number stays one line)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:24]}...({len(text)} characters)"


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


__all__ = ["FIELD_HELP", "RunConfig", "config_fields"]

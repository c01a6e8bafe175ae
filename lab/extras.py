"""Optional dependencies: which extra installs which packages, and what each one enables.

Heavy or platform-specific packages stay out of the base install; a command that needs one
asks for it by extra name and gets one line saying what to install (`require`), and
`lab doctor` lists the extras present and missing from the same table.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lab.errors import MissingExtra

DIST = "cifar-lab-console"  # the name pip knows this project by


@dataclass(frozen=True)
class Extra:
    name: str
    modules: tuple[str, ...]  # importable names the extra provides
    enables: str


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("export", ("safetensors",), "lab export --format safetensors"),
    Extra("onnx", ("onnx", "onnxruntime", "onnxscript"),
          "lab export --format onnx (export and parity check)"),
    Extra("parquet", ("pyarrow",), "lab export-metrics --format parquet"),
    Extra("yaml", ("yaml",), "--config FILE.yaml (YAML config files)"),
    Extra("tensorboard", ("tensorboard",),
          "TensorBoard event files: --set tensorboard=true, lab tb export"),
    Extra("gpu", ("pynvml",), "GPU utilisation, memory and power in system.jsonl (NVML)"),
)}


def missing(name: str) -> list[str]:
    """The modules of extra `name` that cannot be imported here (without importing them)."""
    return [m for m in EXTRAS[name].modules if importlib.util.find_spec(m) is None]


def installed(name: str) -> bool:
    return not missing(name)


def require(name: str, feature: str) -> None:
    """Raise one line naming the extra when `feature` cannot run for lack of it."""
    absent = missing(name)
    if absent:
        raise MissingExtra(f"{feature} needs {', '.join(absent)}: "
                           f"pip install '{DIST}[{name}]'")

"""Where and in what precision a run computes, and how its out-of-memory errors look."""

from __future__ import annotations

import contextlib

import torch

from lab.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """`auto` picks CUDA when present; asking for a device that is not there is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available",
                              hint="use --device cpu or --device auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r} does not exist: "
                              f"{torch.cuda.device_count()} CUDA device(s) visible")
    if spec == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but it is not available", hint="use --device cpu")
    return torch.device(spec)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """How records name a precision: `bfloat16`, `float16` or `fp32`."""
    return str(dtype).replace("torch.", "") if dtype else "fp32"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, RuntimeError)


def is_oom(exc: BaseException) -> bool:
    """CUDA's own error, or the CPU allocator's RuntimeError."""
    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in text \
        or "out of memory" in text.lower()

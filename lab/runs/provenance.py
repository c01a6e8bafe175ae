"""What made a run: code, packages, machine, command and the environment that changes behaviour.

Written once, when the run starts, as `runs/<id>/provenance.json`, so a result can be traced to
the commit and the torch build that produced it long after the environment has changed; a
resume adds its short form to the `resume` event (another machine may have taken it over).
Everything here is gathered without network access and without failing: a fact that cannot be
found is null, never an error.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"  # in the run directory
# Environment variables that change what a run does or how fast: recorded with their values.
ENV_PREFIXES = ("LAB_", "CUDA_", "NCCL_", "TORCH_", "PYTORCH_", "CUBLAS_", "CUDNN_")
ENV_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GIT_TIMEOUT_S = 5.0


def gather(device: Any = None) -> dict[str, Any]:
    """The full record. `device`: the torch device the run uses (its GPU is named)."""
    import torch

    from lab import __version__

    cuda = torch.cuda.is_available()
    return {
        "lab": {"version": __version__, "source": str(source_root()), "git": git_state()},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "torch": torch.__version__, "torchvision": _version_of("torchvision"),
        "cuda": torch.version.cuda, "cudnn": _cudnn(torch) if cuda else None,
        "packages": installed_packages(),
        "host": platform.node(), "os": platform.platform(), "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus(torch) if cuda else [],
        "driver": nvidia_driver() if cuda else None,
        "device": str(device) if device is not None else None,
        "command": shlex.join(sys.argv),
        "env": relevant_env(),
    }


def short(record: dict[str, Any]) -> dict[str, Any]:
    """The few facts a resume event or `lab show` line needs."""
    git = (record.get("lab") or {}).get("git") or {}
    return {"lab": (record.get("lab") or {}).get("version"), "git": git.get("commit"),
            "dirty": git.get("dirty"), "torch": record.get("torch"), "cuda": record.get("cuda"),
            "host": record.get("host"), "device": record.get("device"),
            "gpus": [g.get("name") for g in record.get("gpus") or []]}


def summary_line(record: dict[str, Any]) -> str:
    """One line for `lab show`: lab (commit), Python, torch (CUDA), host and GPU."""
    git = (record.get("lab") or {}).get("git") or {}
    code = f"lab {(record.get('lab') or {}).get('version', '?')}"
    if git.get("commit"):
        code += f" (git {git['commit'][:10]}{', dirty' if git.get('dirty') else ''})"
    torch_text = f"torch {record.get('torch', '?')}"
    if record.get("cuda"):
        torch_text += f" (CUDA {record['cuda']}, cuDNN {record.get('cudnn')})"
    python = (record.get("python") or {}).get("version", "?")
    where = f"on {record.get('host', '?')}"
    gpu_names = [g.get("name") for g in record.get("gpus") or []]
    if gpu_names:
        where += f" with {', '.join(dict.fromkeys(gpu_names))}"
        if record.get("driver"):
            where += f" (driver {record['driver']})"
    return " · ".join([code, f"Python {python}", torch_text, where])


def source_root() -> Path:
    """The directory holding the `lab` package (a checkout's root when run from one)."""
    import lab

    return Path(lab.__file__).resolve().parent.parent


def git_state(root: Path | None = None) -> dict[str, Any] | None:
    """Commit and dirtiness of the checkout `lab` runs from; None when it is not one (an
    installed wheel) or git is missing."""
    root = root or source_root()
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True, timeout=GIT_TIMEOUT_S,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout


def installed_packages() -> dict[str, str]:
    """Every installed distribution and its version (what `pip freeze` would list)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found.setdefault(name, dist.version)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def gpus(torch: Any) -> list[dict[str, Any]]:
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        found.append({"index": i, "name": props.name, "memory": int(props.total_memory),
                      "capability": f"{props.major}.{props.minor}"})
    return found


def nvidia_driver() -> str | None:
    """The NVIDIA driver version, from NVML when the `gpu` extra is there, else nvidia-smi."""
    with contextlib.suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            pynvml.nvmlShutdown()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        return out.splitlines()[0].strip() or None
    return None


def _version_of(module: str) -> str | None:
    """A package's version without importing it here (the layer below views does not)."""
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(module)
    return None


def _cudnn(torch: Any) -> Any:
    with contextlib.suppress(Exception):
        return torch.backends.cudnn.version()
    return None


def relevant_env() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}


def read(run_path: Path) -> dict[str, Any] | None:
    """A run's provenance.json; None when absent (an older run) or unreadable (never fatal:
    provenance describes a run, it is not needed to use it)."""
    import json

    try:
        record = json.loads((Path(run_path) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None

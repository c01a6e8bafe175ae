"""Submit-time checks: what a worker would otherwise find missing hours later, found now.

`lab submit` and the console's new-job dialog queue a config only after `check_submittable`
passes: the data set is `digits`, an existing image folder, or a cached set whose manifest reads
back, and the ImageNet weights a ResNet level asks for are on disk unless a download is allowed.
Nothing here imports torch (a submit is a config check and one transaction); the weights path
follows torch.hub's own rule, which `tests/test_submit_checks.py` holds against torch itself.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from lab.data.catalog import IMAGEFOLDER_PREFIX
from lab.data.store import DATA, RESERVED_NAMES, default_data_dir, list_datasets
from lab.errors import DataError, NotFoundError, WeightsError

FETCHABLE = ("cifar10",)  # names `lab data fetch` can download
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's ImageNet ResNet18 (lab.core.models)
NO_CHECK_HINT = "--no-check queues it anyway, for data that exists only on the worker's machine"


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet18 weights: $TORCH_HOME/hub/checkpoints, with
    TORCH_HOME defaulting to $XDG_CACHE_HOME/torch (torch.hub.get_dir), found without torch."""
    cache = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(home) / "hub" / "checkpoints" / RESNET18_FILE


def dataset_choices(data_dir: Path) -> list[str]:
    """What a job can name without a path: `digits` and every readable cached set, by name."""
    cached = [m["name"] for m in list_datasets(data_dir)
              if "error" not in m and (data_dir / m["name"] / DATA).is_file()]
    return ["digits", *(n for n in cached if n not in RESERVED_NAMES)]


def check_dataset(spec: str, data_dir: Path) -> None:
    """Raise, with the way out, unless a worker with this data dir can load `spec`."""
    if spec == "digits":
        return
    if spec.startswith(IMAGEFOLDER_PREFIX):
        path = Path(spec.removeprefix(IMAGEFOLDER_PREFIX)).expanduser()
        if not path.exists():
            raise NotFoundError(f"no image folder at {path}", hint=NO_CHECK_HINT)
        return
    manifests = {m["name"]: m for m in list_datasets(data_dir)}
    found = manifests.get(spec)
    if found is not None:
        if "error" in found:
            raise DataError(f"cached dataset '{spec}' cannot be read: {found['error']}",
                            hint=f"import it again with `lab data import PATH --name {spec}`")
        if not (data_dir / spec / DATA).is_file():
            raise DataError(f"cached dataset '{spec}' has no {DATA} in {data_dir / spec}",
                            hint=f"import it again with `lab data import PATH --name {spec}`")
        return
    if spec in FETCHABLE:
        raise NotFoundError(f"dataset '{spec}' is not cached in {data_dir}",
                            hint=f"`lab data fetch` downloads it, `lab data import "
                                 f"cifar-10-python.tar.gz` takes a copy you have; {NO_CHECK_HINT}")
    known = dataset_choices(data_dir)
    close = difflib.get_close_matches(spec, [*known, *FETCHABLE], n=1, cutoff=0.6)
    guess = f"did you mean '{close[0]}'? " if close else ""
    fetch = [f"{n} (not cached: lab data fetch)" for n in FETCHABLE if n not in known]
    raise NotFoundError(f"unknown dataset '{spec}': {guess}known: {', '.join(known + fetch)}",
                        hint=f"`lab data import PATH --name {spec}` caches a new one; "
                             f"{NO_CHECK_HINT}")


def check_weights(config: Any) -> None:
    """ImageNet weights for a ResNet config: on disk, or a download allowed (LAB_OFFLINE unset:
    the job downloads them when it starts). A weights file path is checked by `queueable`."""
    if config.model != "resnet18" or config.weights != "imagenet":
        return
    path = imagenet_weights_path()
    if path.is_file() or not os.environ.get("LAB_OFFLINE"):
        return
    raise WeightsError(
        f"ImageNet weights for resnet18 are not in {path} and LAB_OFFLINE is set",
        hint=f"copy {RESNET18_FILE} into {path.parent}, pass --weights FILE, or train from "
             f"scratch with --weights none")


def check_submittable(config: Any, data_dir: Path | None = None) -> None:
    """Everything a queued job needs that can be seen from here: its data set (in `data_dir`,
    by default the one workers use unless told otherwise) and weights."""
    check_dataset(config.dataset, Path(data_dir) if data_dir else default_data_dir())
    check_weights(config)

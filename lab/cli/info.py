"""`lab levels` and `lab doctor`: what the presets are, and whether this machine is ready."""

from __future__ import annotations

import os
import platform
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from lab.cli.common import DataDirOpt, JsonOpt, RunsDirOpt, data_dir, out, print_json, runs_dir

SHOWN_FIELDS = ["model", "weights", "dataset", "image_size", "augment", "dropout", "optimizer",
                "lr", "weight_decay", "batch_size", "epochs", "train_fraction", "val_fraction",
                "split_seed"]


def levels(
    json_out: JsonOpt = False,
    level: Annotated[int | None, typer.Option(
        "--level", "-l", help="With --format: the level whose template to write.",
        show_default=False)] = None,
    recipe: Annotated[str, typer.Option(
        help="With --format: seed (the study's presets) | tuned.")] = "seed",
    fmt: Annotated[str | None, typer.Option(
        "--format", help="toml | json | yaml: write a complete, commented config file of "
        "--level (every field, its value and what it does) for --config.",
        show_default=False)] = None,
) -> None:
    """The three presets side by side, with the accuracy the study reported; or, with
    --level N --format toml, one preset as a config file to edit (lab levels -l 2 --format
    toml > l2.toml)."""
    from lab.errors import ConfigError
    from lab.levels import LEVELS, recipe_config

    if fmt is None:
        if level is not None or recipe != "seed":
            raise ConfigError("--level and --recipe choose a template: add --format toml, "
                              "json or yaml")
    else:
        from lab.configfile import render_template

        if json_out:
            raise ConfigError("--json and --format: choose one")
        if level is None:
            raise ConfigError("--format writes one level's config: add --level 1, 2 or 3")
        config = recipe_config(level, recipe)
        which = "the study's preset" if recipe == "seed" else "the tuned recipe"
        sys.stdout.write(render_template(config, fmt, f"Level {level} "
                                         f"({LEVELS[level].title}), {which}"))
        return
    if json_out:
        print_json({str(n): {"title": lv.title, "seed_accuracy": lv.seed_accuracy,
                             "config": lv.config.to_dict()} for n, lv in LEVELS.items()})
        return
    from lab.cli.render import levels_table

    out.print(levels_table(list(LEVELS.values()), SHOWN_FIELDS))
    out.print("Override any field: lab run --level 3 --epochs 2 --set hflip=0")


def doctor(json_out: JsonOpt = False, runs_path: RunsDirOpt = None,
           data_path: DataDirOpt = None) -> None:
    """torch and CUDA, devices, data caches, weights files, runs directory."""
    report = gather(runs_dir(runs_path), data_dir(data_path))
    if json_out:
        print_json(report)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        if key == "checks":
            continue
        table.add_row(key, Text(_fmt(value)))
    out.print(table)
    for check in report["checks"]:
        mark = Text("✓ ", style="green") if check["ok"] else Text("! ", style="yellow")
        out.print(mark + Text(check["what"]) + Text(f"  {check['fix']}" if not check["ok"]
                                                    else "", style="dim"))


def gather(runs_path: Any, data_path: Any) -> dict[str, Any]:
    import torch

    from lab.core.models import weights_cache_path
    from lab.data import list_datasets
    from lab.runs import list_runs

    cuda = torch.cuda.is_available()
    devices = [f"cuda:{i} {torch.cuda.get_device_name(i)}"
               for i in range(torch.cuda.device_count())] if cuda else []
    try:
        datasets = [f"{m['name']} ({m['counts'].get('train')} train / "
                    f"{m['counts'].get('test') or 0} test, "
                    f"{'official' if m.get('official') else 'not official'})"
                    for m in list_datasets(data_path)]
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not fail
        datasets = [f"unreadable: {exc}"]
    weights = weights_cache_path()
    runs_ok = _writable(runs_path)
    checks = [
        {"what": "CUDA available", "ok": cuda,
         "fix": "training runs on the CPU; install a CUDA build of torch for a GPU"},
        {"what": "CIFAR-10 cached", "ok": any(d.startswith("cifar10 ") for d in datasets),
         "fix": "run `lab data fetch` or `lab data import PATH` (digits always works)"},
        {"what": "ImageNet ResNet18 weights cached", "ok": weights.exists(),
         "fix": f"put resnet18-f37072fd.pth in {weights.parent}, or use --weights FILE|none"},
        {"what": "runs directory writable", "ok": runs_ok,
         "fix": f"check permissions of {runs_path}"},
    ]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "devices": devices or ["cpu"],
        "cpu_threads": torch.get_num_threads(),
        "distributed": _backends(),
        "data_dir": str(data_path),
        "datasets": datasets + ["digits (bundled)"],
        "weights_file": str(weights),
        "runs_dir": str(runs_path),
        "runs": len(list_runs(runs_path)),
        "extras": extras_report(),
        "checks": checks,
    }


def extras_report() -> list[str]:
    """Each optional extra: installed or not, what it enables, how to install it."""
    from lab.extras import DIST, EXTRAS, missing

    lines = []
    for extra in EXTRAS.values():
        absent = missing(extra.name)
        state = "installed" if not absent else \
            f"missing {', '.join(absent)}: pip install '{DIST}[{extra.name}]'"
        lines.append(f"{extra.name}: {state} ({extra.enables})")
    return lines


def _backends() -> str:
    """What `--nproc` can use here: gloo on the CPU, NCCL on GPUs."""
    import torch.distributed as td

    if not td.is_available():
        return "not available in this torch build"
    found = [name for name, ok in (("gloo", td.is_gloo_available()),
                                   ("nccl", td.is_nccl_available())) if ok]
    return ", ".join(found) or "no backend"


def _writable(path: Any) -> bool:
    target = path
    while not os.path.exists(target):
        parent = os.path.dirname(os.path.abspath(target))
        if parent == os.path.abspath(target):
            break
        target = parent
    return os.access(target, os.W_OK)


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) if value else "–"
    return "–" if value is None else str(value)

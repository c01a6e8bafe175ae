"""Options, consoles and output helpers shared by every command group.

Each option is defined once here so `--runs-dir`, `--data-dir` and `--json` mean the same thing
everywhere. Results go to stdout (as a table or as one JSON document); progress and errors go to
stderr, so `lab run --json | jq` always sees clean JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

RunsDirOpt = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Runs directory [env LAB_RUNS_DIR; default ./runs].",
                 show_default=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data cache [env LAB_DATA_DIR; default ~/.cache/lab/data].",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]


def runs_dir(value: Path | None) -> Path:
    from lab.runs import default_runs_dir

    return value if value is not None else default_runs_dir()


def data_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    from lab.data import default_data_dir

    return default_data_dir()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def color_enabled() -> bool:
    return out.is_terminal and not os.environ.get("NO_COLOR")


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"

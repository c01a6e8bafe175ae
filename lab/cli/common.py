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


def runs_dir_to_read(value: Path | None) -> Path:
    """The runs directory of a command that only reads it: a directory that is missing (a
    typo in --runs-dir?) or is not one gets a warning on stderr instead of looking empty.
    Nothing is created: only commands that write make the directory."""
    from lab.runs import runs_dir_problem

    path = runs_dir(value)
    problem = runs_dir_problem(path)
    if problem:
        err.print(f"lab: warning: {problem} (check --runs-dir or LAB_RUNS_DIR)", markup=False,
                  soft_wrap=True)
    return path


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

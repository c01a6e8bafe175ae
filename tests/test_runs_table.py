"""`lab runs` piped is 80 columns wide: every cell of a usual row shows whole there (the run
id, the model, the data set, every state, the figures); before, "interrupted", "resnet18" and
"digits" came out as "int…", "res…", "dig…". The level is in the id's label (`-l1-`)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lab.cli.render import runs_table
from lab.runs import State

MODELS = ["resnet18", "cnn"]
DATASETS = ["cifar10", "digits", "my-set"]


def _row(model: str, dataset: str, state: str) -> dict:
    return {"run_id": "20261202-110648-l1-a9ad", "level": 1, "model": model, "dataset": dataset,
            "state": state, "epoch": 10, "epochs": 10, "val_acc": 0.9497, "test_acc": 0.9354,
            "disk_bytes": 500 * 10**6}


def _render(rows: list[dict], width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(runs_table(rows))
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("state", [s.value for s in State])
def test_every_cell_of_a_usual_row_is_whole_at_80_columns(state: str) -> None:
    rows = [_row(m, d, state) for m in MODELS for d in DATASETS]
    lines = _render(rows, 80)
    assert max(len(line) for line in lines) <= 80
    body = [line for line in lines if line.startswith("2026")]
    assert len(body) == len(rows)  # one line a row: nothing wrapped
    for row, line in zip(rows, body, strict=True):
        for cell in (row["run_id"], row["model"], row["dataset"], state, "10/10", "94.97%",
                     "93.54%"):
            assert cell in line.split(), (cell, line)
        assert line.rstrip().endswith("500 MB"), line

"""`lab export-metrics`: the tidy table read back with pandas holds every number of the runs'
whole events (a torn last line is left out, not fatal) and their config, the same in CSV and
Parquet; bad requests are one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from lab.runs import RunDir
from lab.views.tables import columns, write_table
from tests.cli_inprocess import one_click_command, run_cli
from tests.tui_runs import write_run

A, B = "20250301-090000-l2-0b02", "20250301-100000-l3-0c03"
cli = pytest.fixture(scope="module")(one_click_command)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    write_run(tmp_path, A, 2, epochs=2, config={"study": "s1", "seed": 1, "lr": 3e-4})
    write_run(tmp_path, B, 3, epochs=3, state="running", done_epochs=2, corrupt="metrics")
    return tmp_path


def expected(run: Path) -> list[tuple[str, str, int, int, str, float]]:
    """(run, event, epoch, step, metric, value) from the file, whole lines only."""
    rows = []
    for line in run.joinpath("metrics.jsonl").read_bytes().split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the torn line a live run may end with
        for name, value in event.items():
            if name not in ("event", "epoch", "step") and type(value) in (int, float):
                rows.append((run.name, event["event"], event["epoch"], event["step"], name,
                             float(value)))
    result = run / "result.json"
    if result.exists():
        last = rows[-1]
        rows += [(run.name, "result", last[2], last[3], f"f1/{c['class']}", c["f1"])
                 for c in json.loads(result.read_text())["per_class"]]
    return rows


def as_tuples(frame: pd.DataFrame) -> list[tuple]:
    return [(r.run, r.event, int(r.epoch), int(r.step), r.metric, float(r.value))
            for r in frame.itertuples()]


def test_csv_and_parquet_round_trip_through_pandas(runs: Path, tmp_path: Path) -> None:
    chosen = [RunDir(runs / A), RunDir(runs / B)]
    text = io.StringIO()
    count = write_table(chosen, "csv", None, text)
    frame = pd.read_csv(io.StringIO(text.getvalue()))
    want = expected(runs / A) + expected(runs / B)
    assert count == len(frame) == len(want)
    assert as_tuples(frame) == want
    assert list(frame.columns) == columns()
    first = frame[frame.run == A].iloc[0]
    assert (first.level, first.study, first.seed, first.lr) == (2, "s1", 1, 3e-4)
    assert json.loads(frame[frame.run == B].iloc[0].cnn_channels) == [32, 64, 128, 256]
    out = tmp_path / "m.parquet"
    write_table(chosen, "parquet", out, io.StringIO())
    parquet = pd.read_parquet(out)
    assert as_tuples(parquet) == want
    assert parquet.value.dtype == "float64" and parquet.epoch.dtype == "int64"


def test_the_cli_writes_csv_to_stdout_and_files(runs: Path, tmp_path: Path, cli: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["export-metrics", A[-4:], "--runs-dir", str(runs)])
    assert stopped.value.code in (0, None)
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert as_tuples(frame) == expected(runs / A)
    target = tmp_path / "all.csv"
    code, _err = run_cli(["export-metrics", "-o", str(target), "--runs-dir", str(runs)], capsys)
    assert code == 0 and set(pd.read_csv(target).run) == {A, B}


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--format", "xlsx"], 2, "must be one of csv, parquet"),
    (["--format", "parquet"], 2, "give -o FILE.parquet"),
    (["nosuchrun"], 3, "no run"),
])
def test_bad_requests_are_one_line(runs: Path, cli: None, capsys: pytest.CaptureFixture[str],
                                   args: list[str], code: int, words: str) -> None:
    got, err = run_cli(["export-metrics", *args, "--runs-dir", str(runs)], capsys)
    assert got == code and words in err and len(err.strip().splitlines()) == 1, err


def test_parquet_without_pyarrow_names_the_extra(runs: Path, tmp_path: Path, cli: None,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    got, err = run_cli(["export-metrics", "-f", "parquet", "-o", str(tmp_path / "m.parquet"),
                        "--runs-dir", str(runs)], capsys)
    assert got == 3 and "pip install 'cifar-lab-console[parquet]'" in err
    assert not (tmp_path / "m.parquet").exists()

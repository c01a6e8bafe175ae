"""Run records as one tidy table (CSV or Parquet) for pandas, spreadsheets and other tools.

`metrics.jsonl` is appended while a run trains, so its last line may be half written; a reader
such as `pandas.read_json(lines=True)` then raises. This export reads only whole, valid events
(as every `lab` reader does) and writes one row per number: run, its config, event, epoch, step,
metric, value. Long (tidy) rather than wide, so runs with different metrics share the columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lab.config import config_fields
from lab.runs import RunDir
from lab.runs.store import read_jsonl_counted

FORMATS = ("csv", "parquet")
POSITION = ("event", "epoch", "step")
LEADING = ("run", "level", "study", "seed")  # first columns; the other config fields follow


def columns() -> list[str]:
    rest = [f for f in config_fields() if f not in LEADING]
    return [*LEADING, *rest, *POSITION, "metric", "value"]


def metric_rows(run: RunDir) -> Iterator[dict[str, Any]]:
    """One row per numeric field of each whole event (epoch and step are the row's position,
    not metrics), after the run's config fields. The result's per-class F1 follows as
    `f1/<class>` rows of a `result` event at the last epoch."""
    config = run.config().to_dict()
    base: dict[str, Any] = {"run": run.id, **{k: _cell(v) for k, v in config.items()}}
    events, _torn = read_jsonl_counted(run.metrics_path)
    last_epoch, last_step = 0, 0
    for event in events:
        kind = str(event.get("event"))
        epoch, step = event.get("epoch"), event.get("step")
        last_epoch, last_step = epoch or last_epoch, step or last_step
        for name, value in event.items():
            if name in POSITION or isinstance(value, bool) or \
                    not isinstance(value, (int, float)):
                continue
            yield {**base, "event": kind, "epoch": epoch, "step": step, "metric": name,
                   "value": float(value)}
    result = run.result()
    if result:
        for row in result.get("per_class") or []:
            yield {**base, "event": "result", "epoch": last_epoch, "step": last_step,
                   "metric": f"f1/{row['class']}", "value": float(row["f1"])}


def _cell(value: Any) -> Any:
    """Lists (cnn_channels) as JSON text: a table cell holds one value."""
    return json.dumps(value) if isinstance(value, (list, tuple)) else value


def write_csv(runs: list[RunDir], out: IO[str]) -> int:
    """Rows of every run to `out`; the number of rows."""
    writer = csv.DictWriter(out, fieldnames=columns(), lineterminator="\n")
    writer.writeheader()
    count = 0
    for run in runs:
        for row in metric_rows(run):
            writer.writerow(row)
            count += 1
    return count


def parquet_bytes(runs: list[RunDir]) -> tuple[bytes, int]:
    """The same table as Parquet (the `parquet` extra: pyarrow), typed per column."""
    from lab import extras

    extras.require("parquet", "--format parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row for run in runs for row in metric_rows(run)]
    names = columns()
    table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows],
                                 schema=None) if rows else \
        pa.table({k: pa.array([], pa.string()) for k in names})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue(), len(rows)


def write_table(runs: list[RunDir], fmt: str, path: Path | None, stdout: IO[str]) -> int:
    """Write the table as `fmt` to `path` (atomically) or, for CSV, to `stdout`."""
    from lab.errors import ConfigError
    from lab.runs import atomic_write_bytes

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if path is None:
            raise ConfigError("--format parquet writes a file: give -o FILE.parquet")
        data, count = parquet_bytes(runs)
        atomic_write_bytes(path, data)
        return count
    if path is None:
        return write_csv(runs, stdout)
    text = io.StringIO()
    count = write_csv(runs, text)
    atomic_write_bytes(path, text.getvalue().encode())
    return count

"""`lab study [NAME]`, and `lab cancel --study` / `lab retry --study`: studies in the queue.

A study is a grid of configs times seeds queued together (`lab submit --sweep ... --seeds N
--study NAME`, `lab.queue.studies`). Listing never creates or writes the queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from lab.cli.common import (
    JsonOpt,
    RunsDirOpt,
    err,
    out,
    pct,
    print_json,
    runs_dir,
    runs_dir_to_read,
)
from lab.runs import State
from lab.views.states import look


def study(
    name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", help="A study's name: its jobs by configuration. Without it: every "
        "study.", show_default=False)] = None,
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
) -> None:
    """Studies and their progress (jobs done, running, queued, failed, cancelled), or one
    study's jobs grouped by configuration, with the fields its configurations vary in."""
    from lab.queue import JobQueue
    from lab.queue import studies as engine

    path = runs_dir_to_read(runs)
    queue = JobQueue.open(path, create=False, readonly=True)
    if queue is None:
        if name is not None:
            raise engine.unknown_study(name, [])
        rows: Any = []
    else:
        with queue:
            rows = engine.summaries(queue.jobs()) if name is None else \
                engine.detail(queue, name, path)
    if json_out:
        print_json(rows)
    elif name is None:
        out.print(_list_table(rows))
    else:
        _show(rows)


def _list_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("Study", overflow="fold")
    table.add_column("Jobs", justify="right", no_wrap=True)
    table.add_column("Progress", overflow="fold")
    table.add_column("Grid", justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    for r in rows:
        table.add_row(Text(r["study"]), str(r["jobs"]), progress(r),
                      f"{r['configs']} x {r['seeds']}",
                      (r["created"] or "")[:16].replace("T", " "))
    if not rows:
        table.caption = "no studies: queue one with `lab submit --level 3 --seeds 3 --study " \
                        "NAME`"
    else:
        table.caption = "Grid: configurations x seeds; times in UTC"
    return table


def progress(row: dict[str, Any]) -> Text:
    """`12 done, 2 running, 4 queued`: the states a study's jobs are in, coloured."""
    text = Text()
    for state in ("done", "running", "queued", "failed", "cancelled"):
        if row[state]:
            if text:
                text.append(", ")
            text.append(f"{row[state]} {state}", style=look(state).style)
    return text


def _show(detail: dict[str, Any]) -> None:
    from lab.views.study import show_value

    varying = ", ".join(detail["varying"]) or "nothing (seeds only)"
    out.print(Text.assemble(f"study {detail['study']}: {detail['jobs']} jobs (", progress(detail),
                            f"), {detail['configs']} configs x {detail['seeds']} seeds; "
                            f"varies: {varying}"))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("Config", overflow="fold", ratio=2)
    for column in ("Job", "Seed", "State", "Epoch", "Val", "Test"):
        table.add_column(column, justify="left" if column == "State" else "right",
                         no_wrap=True)
    table.add_column("Run / note", overflow="fold", ratio=1, min_width=10)
    for group in detail["groups"]:
        named = group["label"] != "custom"  # "L2" says the level and its model
        shown = " ".join([group["label"], *(f"{k}={show_value(v)}" for k, v in
                                            group["values"].items()
                                            if not (named and k in ("level", "model")))])
        for n, job in enumerate(group["jobs"]):
            state = job["display_state"]
            note = job["run_id"] or ""
            if job["error"] and state in (State.FAILED, State.CANCELLED, State.INTERRUPTED):
                note = f"{note}: {job['error']}" if note else job["error"]
            table.add_row(Text(shown if n == 0 else ""), str(job["id"]), str(job["seed"]),
                          Text(state, style=look(state).style),
                          f"{job['epoch']}/{job['epochs']}" if job["run_id"] else "–",
                          pct(job["val_acc"]), Text(pct(job["test_acc"]), style="bold"),
                          Text(note))
        table.add_section()
    out.print(table)


def _open_study_queue(runs: Path | None, name: str) -> Any:
    from lab.queue import JobQueue
    from lab.queue.studies import unknown_study

    queue = JobQueue.open(runs_dir(runs), create=False)
    if queue is None:
        raise unknown_study(name, [])
    return queue


def cancel_study(runs: Path | None, name: str, json_out: bool) -> None:
    """`lab cancel --study NAME`."""
    from lab.queue.studies import cancel_study as cancel_waiting

    with _open_study_queue(runs, name) as queue:
        cancelled, running = cancel_waiting(queue, name)
    if json_out:
        print_json({"study": name, "cancelled": [j.id for j in cancelled],
                    "running": [j.id for j in running]})
        return
    out.print(f"study {name}: cancelled {len(cancelled)} waiting job"
              f"{'s' * (len(cancelled) != 1)}")
    if running:
        ids = " ".join(str(j.id) for j in running)
        out.print(f"{len(running)} running job{'s' * (len(running) != 1)} left running "
                  f"({ids}): `lab cancel {running[0].id}` stops one")


def retry_study(runs: Path | None, name: str, fresh: bool, json_out: bool) -> None:
    """`lab retry --study NAME`."""
    from lab.queue.studies import retry_study as requeue

    with _open_study_queue(runs, name) as queue:
        again = requeue(queue, name, fresh=fresh)
        idle = any(j.backend == "local" for j in again) and \
            not any(w.alive for w in queue.workers())
    if json_out:
        print_json([j.to_dict() for j in again])
    else:
        ids = f": {' '.join(str(j.id) for j in again)}" if again else ""
        out.print(f"study {name}: {len(again)} failed or cancelled job"
                  f"{'s' * (len(again) != 1)} queued again{ids}")
    failed = [j for j in again if j.state == State.FAILED]  # sbatch refused them
    if failed:
        from lab.errors import RunFailed

        raise RunFailed(f"job {failed[0].id}: {failed[0].error}")
    if idle:
        err.print("no worker is running: start one with `lab worker --detach`")

"""`lab worker`: start a worker (in the foreground or detached), see them, stop them."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from lab.cli.common import (
    DataDirOpt,
    JsonOpt,
    RunsDirOpt,
    data_dir,
    err,
    out,
    print_json,
    runs_dir,
)
from lab.runs import State

app = typer.Typer(
    help="Workers run queued jobs, one per GPU, each in its own process.",
    no_args_is_help=False, invoke_without_command=True,
)
WORKER_STYLE = {"running": "green", "stopping": "yellow", "stopping now": "yellow",
                "unresponsive": "red", "dead": "red"}


@app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    gpus: Annotated[str, typer.Option(
        help="GPUs to use, one job on each: all (every visible GPU; one CPU slot without "
             "any), cpu, or numbers like 0,1.")] = "all",
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="Run in the background, surviving the terminal and SSH.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue.",
                                        min=0.05)] = 1.0,
    heartbeat: Annotated[float, typer.Option(
        help="Seconds between heartbeats; three missed ones expire its lease.",
        min=0.05)] = 5.0,
    exit_when_idle: Annotated[bool, typer.Option(
        "--exit-when-idle", help="Exit once nothing is left to claim (jobs of crashed workers "
        "included) and its own jobs are done.")] = False,
    on_end: Annotated[str | None, typer.Option(
        "--on-end", help="Shell command run when each job ends, with LAB_JOB_ID, LAB_JOB_STATE, "
        "LAB_RUN_ID, LAB_TEST_ACC, LAB_JOB_LOG ... in its environment (see README).",
        show_default=False)] = None,
    detached_child: Annotated[bool, typer.Option("--detached-child", hidden=True)] = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Start a worker: it claims queued jobs (highest priority first) and runs them; see
    `lab worker status`, `lab worker stop`."""
    if ctx.invoked_subcommand is not None:
        return
    from lab.queue.notify import MAX_COMMAND
    from lab.queue.worker import Worker, parse_gpus, visible_device_count
    from lab.queue.worker import detach as start_detached

    runs_path, data_path = runs_dir(runs).resolve(), data_dir(data).resolve()
    if on_end is not None and (not on_end.strip() or len(on_end) > MAX_COMMAND
                               or "\0" in on_end):
        from lab.errors import ConfigError

        raise ConfigError(f"--on-end: give a shell command of 1 to {MAX_COMMAND} characters")
    spec = gpus.strip().lower()
    numbers = bool(re.fullmatch(r"[\d,\s]+", spec))
    count = visible_device_count() if spec == "all" or numbers else 0  # torch only if needed
    slots = parse_gpus(gpus, count, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if detach:
        argv = ["worker", "--gpus", gpus, "--poll", str(poll), "--heartbeat", str(heartbeat),
                "--runs-dir", str(runs_path), "--data-dir", str(data_path), "--detached-child"]
        if exit_when_idle:
            argv.append("--exit-when-idle")
        if on_end:
            argv += ["--on-end", on_end]
        pid, log = start_detached(argv, runs_path)
        out.print(f"worker started in the background: pid {pid}, slots "
                  f"{', '.join(s.name for s in slots)}")
        out.print(f"log: {log}\nsee `lab worker status`; stop it with `lab worker stop`")
        return
    try:
        Worker(runs_path, data_path, slots, poll=poll, heartbeat=heartbeat,
               exit_when_idle=exit_when_idle, detached=detached_child, on_end=on_end).run()
    except KeyboardInterrupt:
        err.print("worker interrupted: its jobs are marked interrupted and resume from their "
                  "last checkpoint when a worker starts")
        raise typer.Exit(130) from None


@app.command()
def status(json_out: JsonOpt = False, runs: RunsDirOpt = None) -> None:
    """Workers of this runs directory: state, heartbeat, the jobs they run, their logs."""
    from lab.queue import JobQueue
    from lab.queue.actions import worker_summary

    queue = JobQueue.open(runs_dir(runs), create=False, readonly=True)
    rows = []
    if queue is not None:
        with queue:
            jobs = queue.jobs((State.RUNNING,))
            rows = [worker_summary(w, jobs) for w in queue.workers()]
    if json_out:
        print_json(rows)
        return
    if not rows:
        out.print("no worker is running: start one with `lab worker --detach`")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("Pid", "Host", "State", "Slots", "Heartbeat", "Jobs", "Log"):
        table.add_column(name, no_wrap=name != "Log", overflow="fold")
    for r in rows:
        jobs_text = ", ".join(f"{j['id']} on {j['gpu']}" for j in r["jobs"]) or "idle"
        table.add_row(str(r["pid"]), r["host"],
                      Text(r["state"], style=WORKER_STYLE.get(r["state"], "")),
                      ",".join(r["slots"]), f"{r['heartbeat_age_s']:.0f}s ago", jobs_text,
                      r["log"] or "(foreground)")
    out.print(table)


@app.command()
def stop(
    now: Annotated[bool, typer.Option(
        "--now", help="Cancel the running jobs too (their runs are kept, marked cancelled).")
    ] = False,
    pid: Annotated[int | None, typer.Option(help="Only the worker with this pid.",
                                            show_default=False)] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the workers have exited.")] = False,
    runs: RunsDirOpt = None,
) -> None:
    """Ask the workers to exit after their current jobs (--now: cancel those first)."""
    from lab.errors import NotFoundError
    from lab.queue import JobQueue
    from lab.runs import pid_alive

    path: Path = runs_dir(runs)
    queue = JobQueue.open(path, create=False)
    asked = []
    if queue is not None:
        with queue:
            asked = queue.request_stop(now=now, pid=pid)
    if not asked:
        if pid is not None:
            raise NotFoundError(f"no running worker with pid {pid}", hint="see `lab worker status`")
        err.print("no worker is running")
        return
    for w in asked:
        what = "cancels its jobs and exits" if now else "exits after its current job"
        out.print(f"worker pid {w.pid} {what}")
    while wait and any(pid_alive(w.pid) for w in asked):
        time.sleep(0.2)

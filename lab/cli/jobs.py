"""`lab submit`, `lab queue`, `lab cancel`, `lab retry`, `lab logs`: the job queue by hand.

None of these import torch: submitting is a config check and one database transaction, so a
script can queue many jobs quickly. Readers never create the database (`lab queue` in a fresh
directory prints an empty queue and writes nothing). `--slurm` jobs go through `lab.queue.slurm`;
listings show Slurm's view of them (`lab.queue.actions.refresh`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

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
    pct,
    print_json,
    runs_dir,
    runs_dir_to_read,
)
from lab.cli.run import (
    BatchSizeOpt,
    ConfigFileOpt,
    DatasetOpt,
    DeviceOpt,
    EpochsOpt,
    ImageSizeOpt,
    LrOpt,
    NprocOpt,
    PrecisionOpt,
    RecipeOpt,
    SeedOpt,
    SetOpt,
    WeightsOpt,
)
from lab.runs import State
from lab.views.states import look

JobArg = Annotated[str, typer.Argument(metavar="JOB", help="Job id (as `lab queue` shows it).")]
OptionalJobArg = Annotated[str | None, typer.Argument(
    metavar="[JOB]", help="Job id (as `lab queue` shows it); or --study NAME.",
    show_default=False)]
StudyOpt = Annotated[str | None, typer.Option(
    "--study", help="The study's jobs instead of one job (see `lab study`).",
    show_default=False)]

def submit(
    levels: Annotated[list[int] | None, typer.Option(
        "--level", "-l", help="Seed preset; repeat for several jobs (--level 1 --level 2).",
        show_default=False)] = None,
    config_file: ConfigFileOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    nproc: NprocOpt = None,
    assignments: SetOpt = None,
    recipe: RecipeOpt = "seed",
    sweep: Annotated[list[str] | None, typer.Option(
        "--sweep", help="KEY=V1,V2,...: one job per value (repeat for a grid; values as for "
        "--set). Makes a study.", show_default=False)] = None,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", help="N training seeds per config: seed, seed+1, ... (the split stays). "
        "Makes a study.", min=1, show_default=False)] = None,
    study: Annotated[str | None, typer.Option(
        "--study", help="The study's name (an existing study is added to); with --sweep or "
        "--seeds and no name, one is made from the time.", show_default=False)] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Queue a grid over the size limit (a submit without --yes "
        "names it).")] = False,
    priority: Annotated[int, typer.Option(
        help="Higher runs first; equal priorities run in submission order.")] = 0,
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Print only the job ids, one a line.")] = False,
    use_slurm: Annotated[bool, typer.Option(
        "--slurm", help="Hand each job to Slurm (sbatch) instead of the local workers.")] = False,
    partition: Annotated[str | None, typer.Option(
        help="Slurm partition (with --slurm).", show_default=False)] = None,
    gpus_per_job: Annotated[int, typer.Option(
        "--gpus-per-job", help="GPUs Slurm gives each job (with --slurm; 0: CPU only).",
        min=0)] = 0,
    time_limit: Annotated[str | None, typer.Option(
        "--time", help="Slurm time limit per job, e.g. 2:00:00 (with --slurm).",
        show_default=False)] = None,
    account: Annotated[str | None, typer.Option(
        help="Slurm account to charge (with --slurm).", show_default=False)] = None,
    qos: Annotated[str | None, typer.Option(
        help="Slurm quality of service (with --slurm).", show_default=False)] = None,
    mem: Annotated[str | None, typer.Option(
        help="Memory per job, e.g. 16G (with --slurm).", show_default=False)] = None,
    cpus_per_task: Annotated[int | None, typer.Option(
        "--cpus-per-task", help="CPUs per job (with --slurm).", show_default=False)] = None,
    sbatch_args: Annotated[list[str] | None, typer.Option(
        "--sbatch-arg", help="Any other sbatch option, long form, one per --sbatch-arg "
        "(repeatable), e.g. --sbatch-arg=--constraint=a100 (with --slurm).",
        show_default=False)] = None,
    max_requeues: Annotated[int | None, typer.Option(
        "--max-requeues", help="How often a job that reaches its time limit or is preempted "
        "is submitted again to resume its run (with --slurm; default 3, 0: never).",
        show_default=False)] = None,
    no_check: Annotated[bool, typer.Option(
        "--no-check", help="Queue without looking for the data set and weights here: for "
        "data that exists only on the worker's machine.")] = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Queue one job per --level (same overrides for each), or a study: each level's grid of
    --sweep values times --seeds seeds. A worker runs them, or with --slurm, Slurm does.
    Nothing is queued unless every job is valid and its data set and weights are there
    (--no-check skips that, for data that exists only on the worker's machine)."""
    from lab.configfile import read_config_file
    from lab.errors import ConfigError, RunFailed
    from lab.levels import build_config, check_sweep
    from lab.queue import JobQueue, check_priority, studies
    from lab.queue.actions import queueable_all

    check_priority(priority)
    if not use_slurm:
        given = [flag for flag, value in (
            ("--partition", partition), ("--gpus-per-job", gpus_per_job or None),
            ("--time", time_limit), ("--account", account), ("--qos", qos), ("--mem", mem),
            ("--cpus-per-task", cpus_per_task), ("--sbatch-arg", sbatch_args or None),
            ("--max-requeues", max_requeues)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: these options are for --slurm jobs")
    options = dict(epochs=epochs, image_size=image_size, batch_size=batch_size, lr=lr,
                   weights=weights, dataset=dataset, device=device, precision=precision,
                   seed=seed, nproc=nproc)
    file_sweep: dict[str, list] = {}
    if config_file is not None:
        if levels and len(levels) > 1:
            raise ConfigError("--config takes at most one --level")
        source = read_config_file(config_file)
        configs = [build_config(levels[0] if levels else None, source, options,
                                assignments or [], recipe=recipe)]
        if source.is_study:  # the file's [sweep] and [study]; flags override their keys
            check_sweep(configs[0], source)
            file_sweep = dict(source.sweep)
            seeds = seeds if seeds is not None else source.seeds
            study = study if study is not None else source.study
    elif not levels:
        raise ConfigError("choose --level 1|2|3 (repeatable) or --config FILE",
                          hint="see `lab levels`")
    else:
        configs = [build_config(level, None, options, assignments or [], recipe=recipe)
                   for level in levels]
    named = study
    if sweep or file_sweep or seeds is not None or study is not None:  # every grid planned
        study = study if study is not None else studies.generated_name()
        configs = studies.plan(configs, {**file_sweep, **studies.parse_sweep(sweep or [])},
                               seeds or 1, study, allow_large=yes)
    # every config checked (data set and weights too) before anything is written
    configs = queueable_all(configs, data_dir(data), check=not no_check)
    done = None
    if not use_slurm:
        with JobQueue.open(runs_dir(runs)) as queue:
            if study is not None:
                done = studies.submit_study(queue, configs, priority=priority,
                                            generated=named is None)
                jobs = done.jobs
            else:
                jobs = queue.submit(configs, priority=priority)
            idle = not any(w.alive for w in queue.workers())
    else:
        from lab.queue import slurm

        options = slurm.SlurmOptions.checked(
            partition, gpus_per_job, time_limit, data_dir(data), account=account, qos=qos,
            mem=mem, cpus_per_task=cpus_per_task, extra=sbatch_args or (),
            max_requeues=slurm.DEFAULT_MAX_REQUEUES if max_requeues is None else max_requeues)
        slurm.command("sbatch")  # before the queue is opened: without Slurm nothing is written
        path = runs_dir(runs).resolve()
        with JobQueue.open(path) as queue:
            jobs = slurm.submit(queue, configs, priority, options, path)
        idle = False
    if study is not None and named is None:  # on stderr: -q and --json stay as they were
        err.print(f"no --study given: this study is named {jobs[0].study}")
    if json_out:
        print_json([j.to_dict() for j in jobs])
    elif quiet:
        out.print("\n".join(str(j.id) for j in jobs))
    elif done is not None:
        out.print(done.describe())
        out.print(f"follow it with `lab study {done.study}`")
    else:
        for j in jobs:
            c = j.config
            how = (f"queued: {j.label}" if j.backend == "local" else
                   f"submitted to Slurm as job {j.slurm_id}: {j.label}" if j.slurm_id else
                   f"failed: {j.label}")
            out.print(f"job {j.id} {how} {c['model']} on {c['dataset']}, "
                      f"{c['image_size']}px, {c['epochs']} epochs, priority {j.priority}")
    if idle and not quiet:
        err.print("no worker is running: start one with `lab worker --detach`")
    failed = [j for j in jobs if j.backend == "slurm" and j.state == State.FAILED]
    if failed:
        raise RunFailed(f"job {failed[0].id}: {failed[0].error}"
                        + (f" ({len(failed)} jobs failed)" if len(failed) > 1 else ""))


def queue_cmd(
    json_out: JsonOpt = False,
    show_all: Annotated[bool, typer.Option(
        "--all", "-a", help="Every finished job, not only the last 10.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w",
                                        help="Keep the table up to date until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.",
                                            min=0.1)] = 1.0,
    runs: RunsDirOpt = None,
) -> None:
    """Jobs: running, then waiting (in the order workers take them), then recent finished."""
    path = runs_dir_to_read(runs)
    if not watch:
        rows = _rows(path, show_all)
        if json_out:
            print_json(rows)
        else:
            out.print(jobs_table(rows))
        return
    try:
        if out.is_terminal and not json_out:
            _watch_live(path, show_all, interval)
        else:
            _watch_lines(path, show_all, interval, json_out)
    except KeyboardInterrupt:
        return


def _watch_live(path: Path, show_all: bool, interval: float) -> None:
    from rich.live import Live

    with Live(jobs_table(_rows(path, show_all)), console=out, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(jobs_table(_rows(path, show_all)), refresh=True)


def _watch_lines(path: Path, show_all: bool, interval: float, json_out: bool) -> None:
    """A pipe or a log: the table (or JSON document) again each time it changes."""
    last = None
    while True:
        rows = _rows(path, show_all)
        text = json.dumps(rows, default=str)
        if text != last:
            if json_out:
                print_json(rows)
            else:
                out.print(jobs_table(rows))
            last = text
        time.sleep(interval)


def _rows(path: Path, show_all: bool) -> list[dict[str, Any]]:
    from lab.queue import JobQueue
    from lab.queue.actions import display_order, job_summary, refresh

    queue = JobQueue.open(path, create=False, readonly=True)  # looking never writes...
    if queue is None:
        return []
    with queue:
        jobs = queue.jobs()
    seen: dict = {}
    if any(j.backend == "slurm" for j in jobs):  # ...but what Slurm says of its jobs is kept
        with JobQueue.open(path, create=False) as queue:
            jobs, seen = refresh(queue, queue.jobs(), path)
    jobs = display_order(jobs, recent=None if show_all else 10)
    return [job_summary(j, path, seen.get(j.id)) for j in jobs]


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("Job", "L", "State", "Prio", "Try", "GPU", "Epoch", "Val", "Test"):
        table.add_column(name, justify="left" if name in ("L", "State", "GPU") else "right",
                         no_wrap=True)
    slurm = any(r.get("backend") == "slurm" for r in rows)
    if slurm:  # only where there are Slurm jobs: a local queue looks as it always did
        table.add_column("Slurm", no_wrap=True)
    table.add_column("Run / note", min_width=23, overflow="fold")
    for r in rows:
        state = r["display_state"]
        note = r["run_id"] or ""
        if r["error"] and state in (State.FAILED, State.INTERRUPTED, State.CANCELLED,
                                    State.QUEUED):  # queued: why it was requeued
            note = f"{note}: {r['error']}" if note else r["error"]
        cells = [str(r["id"]), str(r["level"] or "–"),
                 Text(state, style=look(state).style), str(r["priority"]),
                 str(r["attempts"]), r["gpu"] or "–",
                 f"{r['epoch']}/{r['epochs']}" if r["run_id"] else "–",
                 pct(r["val_acc"]), Text(pct(r["test_acc"]), style="bold")]
        if slurm:
            requeued = f"requeued {r['requeues']}/{r['max_requeues']}" \
                if r.get("requeues") else None
            cells.append(" ".join(str(v) for v in (r.get("slurm_id"), r.get("slurm_state"),
                                                   requeued) if v) or "–")
        table.add_row(*cells, Text(note))  # an error message is plain text, never markup
    if not rows:
        table.caption = "no jobs: queue some with `lab submit --level 3`"
    return table


def cancel(
    job_ref: OptionalJobArg = None,
    study: StudyOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait until a running job has stopped.")] = False,
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
) -> None:
    """Cancel a job: a waiting one never runs; a running one stops cleanly at its next batch,
    its run kept and marked cancelled. --study NAME cancels the study's waiting jobs only
    (its running ones go on; cancel them by id)."""
    from lab.queue import FINISHED, parse_job_id
    from lab.queue.actions import cancel_job, refresh

    if _one_of(job_ref, study, wait=wait):
        from lab.cli.studies import cancel_study

        return cancel_study(runs, str(study), json_out)
    job_id = parse_job_id(job_ref)
    with _open(runs, job_id) as queue:
        job = cancel_job(queue, job_id)
        while wait and job.state not in FINISHED:
            time.sleep(0.2)
            job = refresh(queue, [queue.get(job_id)], runs_dir(runs))[0][0]
    if json_out:
        print_json(job.to_dict())
    elif job.state == State.CANCELLED:
        kept = f"; run {job.run_id} kept" if job.run_id else ""
        out.print(f"job {job.id} cancelled{kept}")
    elif job.state == State.RUNNING:
        out.print(f"job {job.id} is cancelling: it stops at its next batch and its run "
                  f"{job.run_id or '(not created yet)'} is kept")
    else:
        out.print(f"job {job.id} {job.state} before the cancel reached it")


def retry(
    job_ref: OptionalJobArg = None,
    study: StudyOpt = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Start a new run instead of resuming the job's run.")] = False,
    json_out: JsonOpt = False,
    runs: RunsDirOpt = None,
) -> None:
    """Queue a failed, cancelled or interrupted job again; it resumes its run from the last
    checkpoint (or, with --fresh, starts a new one). --study NAME queues every failed or
    cancelled job of the study again."""
    from lab.errors import RunFailed
    from lab.queue import parse_job_id
    from lab.queue.actions import retry_job

    if _one_of(job_ref, study):
        from lab.cli.studies import retry_study

        return retry_study(runs, str(study), fresh, json_out)
    job_id = parse_job_id(job_ref)
    with _open(runs, job_id) as queue:
        job = retry_job(queue, job_id, fresh=fresh)
        idle = job.backend == "local" and not any(w.alive for w in queue.workers())
    if job.state == State.FAILED:  # sbatch refused it
        raise RunFailed(f"job {job.id}: {job.error}")
    if json_out:
        print_json(job.to_dict())
    else:
        how = f"resumes run {job.run_id}" if job.run_id else "starts a new run"
        where = f" (Slurm job {job.slurm_id})" if job.slurm_id else ""
        out.print(f"job {job.id} queued again{where}: its next attempt {how}")
    if idle:
        err.print("no worker is running: start one with `lab worker --detach`")


def logs(
    job_ref: JobArg,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing until the job ends.")] = False,
    runs: RunsDirOpt = None,
) -> None:
    """What a job's process printed (every attempt), optionally followed live."""
    from lab.queue import FINISHED, job_log_path, parse_job_id

    job_id = parse_job_id(job_ref)
    path = runs_dir(runs)
    with _open(runs, job_id, readonly=True) as queue:
        job = queue.get(job_id)
        log = job_log_path(path, job_id)
        if not follow:
            if not log.exists():
                err.print(f"job {job_id} has no log yet ({job.display_state})")
                return
            sys.stdout.buffer.write(log.read_bytes())
            sys.stdout.flush()
            return
        offset = 0
        try:
            while True:
                done = queue.get(job_id).state in FINISHED  # read before the final drain
                if log.exists():
                    with open(log, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read()
                    offset += len(chunk)
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                if done:
                    return
                time.sleep(0.3)
        except KeyboardInterrupt:
            return


def _one_of(job_ref: str | None, study: str | None, wait: bool = False) -> bool:
    """Whether the command names a study (True) or a job (False); both or neither is a
    usage error."""
    from lab.errors import ConfigError

    if (job_ref is None) == (study is None):
        raise ConfigError("name a job (JOB) or a study (--study NAME), not both"
                          if study is not None else "name a job (JOB) or a study (--study NAME)")
    if study is not None and wait:
        raise ConfigError("--wait waits for one job: cancel the study's running jobs by id")
    return study is not None


def _open(runs: Path | None, job_id: int, readonly: bool = False) -> Any:
    from lab.errors import NotFoundError
    from lab.queue import JobQueue

    path = runs_dir(runs)
    queue = JobQueue.open(path, create=False, readonly=readonly)
    if queue is None:
        raise NotFoundError(f"no job {job_id}: {path} has no queue yet",
                            hint="queue jobs with `lab submit`")
    return queue

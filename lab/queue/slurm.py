"""Slurm as a job backend: `lab submit --slurm` hands each queued job to `sbatch`.

A Slurm job stays a row of `runs/lab.db` (backend 'slurm', with its Slurm id), so `lab queue`,
`lab cancel`, `lab retry`, `lab logs` and the console treat it like a local one. What runs on the
node is `python -m lab.jobrun JOB --slurm` (the script is `runs/jobs/<id>.sbatch`, its output
`runs/jobs/<id>.log`): it claims the job for itself, trains into the shared runs directory and
records the outcome, as a worker's job process does.

Slurm is the authority on whether such a job still lives. Listings ask `squeue` once for all
their Slurm jobs (and `sacct` once for those squeue has forgotten); a job that Slurm ended
without the job recording it (timeout, node failure, out of memory, cancelled while pending)
takes Slurm's state, and one that Slurm no longer knows at all takes its run's status.json.
Every Slurm command runs with a timeout, so a hung controller slows a listing, never blocks it.

Time limits and preemption: a job submitted with requeues allowed (`--max-requeues`, 3 from
`lab submit`) asks Slurm for SIGUSR1 a lead before its limit (`--signal=B:USR1@LEAD`); its
process then writes a checkpoint of the current step and submits its own next Slurm job
(`requeue_itself`, to start once this one has ended), so the run goes on with nobody listing
the queue. A job that Slurm ended by its time limit (TIMEOUT) or a preemption (PREEMPTED), or
that stopped on the signal but could not submit from its node, is submitted again by the next
listing (`reconcile`). Either way the same bounded decision applies (`requeue_decision`), every
requeue is recorded in the job's options (`requeued`), and past the bound the job fails saying
so. SIGUSR1, not SIGTERM: SIGTERM is also what `scancel` and a preemption send, and a job
scancelled by hand must not come back.
Nothing here imports torch or Textual.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError, NotFoundError, RunFailed
from lab.queue.jobs import FINISHED, Job, JobQueue, iso, job_log_path, now_text
from lab.runs import RunDir, State, atomic_write_bytes, validate_run_ref
from lab.shapes import ascii_int

# Slurm's job states (squeue %T, sacct State) as lab job states. Anything else is left alone.
SLURM_STATES = {
    **dict.fromkeys(("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                     "RESV_DEL_HOLD"), State.QUEUED),
    **dict.fromkeys(("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                     "STAGE_OUT", "RESIZING"), State.RUNNING),
    "COMPLETED": State.DONE,
    "CANCELLED": State.CANCELLED,
    **dict.fromkeys(("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                     "PREEMPTED", "DEADLINE", "REVOKED", "SPECIAL_EXIT"), State.FAILED),
}
COMMAND_TIMEOUT_S = 20.0
RECENT_S = 3600.0  # finished jobs younger than this are still looked up (squeue's MinJobAge)
PASS_ENV = ("LAB_OFFLINE", "TORCH_HOME")  # handed to the job even where sbatch exports nothing
_PARTITION = re.compile(r"[A-Za-z0-9_.,-]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # an account or a QOS
_MEM = re.compile(r"\d{1,12}[KMGT]?", re.IGNORECASE)
_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|unlimited|infinite", re.IGNORECASE)
_TIME_PARTS = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_SAFE_PATH = re.compile(r"[^\s\"'\\$`]+")
_OPTION = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.+))?", re.DOTALL)
# What an #SBATCH line's value may hold: printable ASCII without blanks, quotes, backslashes
# or '#', so sbatch's own parser reads exactly one option from it (it splits a line at blanks
# and honours quotes) and nothing reaches a second line.
_UNSAFE_VALUE = set(" \"'\\#")
MAX_SBATCH_ARGS = 32
MAX_REQUEUES = 100
DEFAULT_MAX_REQUEUES = 3  # what `lab submit --slurm` gives a job
# Options lab writes or relies on itself (getopt also takes any unambiguous abbreviation, so a
# name that begins one of these is refused too): the log, the working directory, one job per
# lab job, the time limit the signal lead is taken from, the GPUs the job may see.
_RESERVED = {
    "job-name": None, "output": None, "error": None, "open-mode": None, "chdir": None,
    "wrap": None, "array": None, "parsable": None, "test-only": None,
    "time": "--time", "gres": "--gpus-per-job", "gpus": "--gpus-per-job",
    "gpus-per-node": "--gpus-per-job", "gpus-per-task": "--gpus-per-job",
    "gpus-per-socket": "--gpus-per-job",
}
SIGNAL_LEAD_S = 120  # SIGUSR1 this long before the time limit; a quarter of a shorter limit
TIME_LIMIT_NOTE = "interrupted: its Slurm time limit is near"  # how the job records that stop
REQUEUE_CAUSES = ("TIMEOUT", "PREEMPTED", "SIGNAL")  # SIGNAL: it stopped on the time-limit signal
_CAUSE_TEXT = {"TIMEOUT": "reached its time limit", "PREEMPTED": "was preempted",
               "SIGNAL": "stopped before its time limit"}
_accounting = {"mode": "sacct"}  # "completion" once sacct said accounting is disabled


@dataclass(frozen=True)
class SlurmOptions:
    """How a job is handed to sbatch; stored with the job so `lab retry` and a requeue submit
    it alike. `max_requeues` is 0 unless given: jobs recorded before requeues existed (and
    `SlurmOptions()`) keep the behaviour they were submitted with; `lab submit` gives 3."""

    partition: str | None = None
    gpus: int = 0
    time: str | None = None
    data_dir: str | None = None  # absolute: the node reads the same data cache
    account: str | None = None
    qos: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    extra: tuple[str, ...] = ()  # --sbatch-arg: each `--name` or `--name=value`
    max_requeues: int = 0

    @classmethod
    def checked(cls, partition: str | None = None, gpus: int = 0, time: str | None = None,
                data_dir: Path | str | None = None, *, account: str | None = None,
                qos: str | None = None, mem: str | None = None,
                cpus_per_task: int | None = None, extra: Iterable[str] = (),
                max_requeues: int = 0) -> SlurmOptions:
        """Refuse what sbatch would refuse (or misread) before anything is recorded."""
        data = str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None
        options = cls(partition, gpus, time, data, account, qos, mem, cpus_per_task,
                      tuple(extra), max_requeues)
        options.check()
        return options

    def check(self) -> None:
        """Each value must make exactly the one #SBATCH option it names: the script is
        written from these again at every retry and requeue, so a record that was changed
        by hand is checked as strictly as the command line was."""
        if self.partition is not None and not _PARTITION.fullmatch(self.partition):
            raise ConfigError(f"--partition {self.partition!r}: expected a partition name "
                              "(letters, digits, '_', '-', '.'; several with commas)")
        if not 0 <= self.gpus <= 1024:
            raise ConfigError(f"--gpus-per-job {self.gpus}: must be between 0 and 1024")
        if self.time is not None and not _TIME.fullmatch(self.time):
            raise ConfigError(f"--time {self.time!r}: expected a Slurm time limit such as 30, "
                              "2:00:00 or 1-12:00:00")
        for flag, value in (("--account", self.account), ("--qos", self.qos)):
            if value is not None and not _NAME.fullmatch(value):
                raise ConfigError(f"{flag} {value!r}: expected a Slurm name (letters, digits, "
                                  "'_', '-', '.'; at most 64)")
        if self.mem is not None and not _MEM.fullmatch(self.mem):
            raise ConfigError(f"--mem {self.mem!r}: expected a size such as 16G, 4000M or "
                              "4000 (megabytes)")
        if self.cpus_per_task is not None and not 1 <= self.cpus_per_task <= 4096:
            raise ConfigError(f"--cpus-per-task {self.cpus_per_task}: must be between 1 "
                              "and 4096")
        if not 0 <= self.max_requeues <= MAX_REQUEUES:
            raise ConfigError(f"--max-requeues {self.max_requeues}: must be between 0 and "
                              f"{MAX_REQUEUES}")
        if len(self.extra) > MAX_SBATCH_ARGS:
            raise ConfigError(f"--sbatch-arg: at most {MAX_SBATCH_ARGS} of them")
        named = {name for name, value in [("partition", self.partition), *self.named()]
                 if value is not None}
        seen: set[str] = set()
        for arg in self.extra:
            name = sbatch_arg_name(arg)
            if name in named or name in seen:
                raise ConfigError(f"--sbatch-arg {arg!r}: --{name} is given twice")
            seen.add(name)

    def named(self) -> list[tuple[str, object]]:
        """The named options beyond partition, time and GPUs, as sbatch spells them."""
        return [("account", self.account), ("qos", self.qos), ("mem", self.mem),
                ("cpus-per-task", self.cpus_per_task)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmOptions:
        """The options as stored with a job; a value of the wrong type is a one-line error
        (exit 2) when the job is submitted again, never a crash of a listing."""
        def number(key: str, default: int | None) -> int | None:
            value = data.get(key)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, (int, str)) \
                    or not str(value).isdigit():
                raise ConfigError(f"the job's Slurm option {key}={value!r} is not a number",
                                  hint="`lab submit --slurm` it again")
            return int(value)

        extra = data.get("extra") or ()
        if not isinstance(extra, (list, tuple)):
            extra = (extra,)
        text = {k: data.get(k) for k in ("partition", "time", "data_dir", "account", "qos",
                                         "mem")}
        for key, value in [*text.items(), *(("extra", v) for v in extra)]:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"the job's Slurm option {key}={value!r} is not text",
                                  hint="`lab submit --slurm` it again")
        return cls(text["partition"], number("gpus", 0) or 0, text["time"], text["data_dir"],
                   text["account"], text["qos"], text["mem"], number("cpus_per_task", None),
                   tuple(extra), number("max_requeues", 0) or 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extra": list(self.extra)}


def sbatch_arg_name(arg: str) -> str:
    """The option an `--sbatch-arg` names, or a one-line error: sbatch's long form only
    (`--name` or `--name=value`), one option, nothing a line break, a blank, a quote or a '#'
    could turn into a second option or a second #SBATCH line, and none lab writes itself."""
    match = _OPTION.fullmatch(arg) if isinstance(arg, str) else None
    if match is None:
        raise ConfigError(f"--sbatch-arg {arg!r}: expected one sbatch option in its long form, "
                          "--name or --name=VALUE (e.g. --sbatch-arg=--constraint=a100)")
    name, value = match.group(1), match.group(2)
    if value is not None and (not value.isascii() or not value.isprintable()
                              or _UNSAFE_VALUE & set(value) or len(value) > 1000):
        raise ConfigError(f"--sbatch-arg {arg!r}: the value must be printable ASCII without "
                          "blanks, quotes, backslashes or '#' (one option per --sbatch-arg)")
    for reserved, instead in _RESERVED.items():
        if reserved.startswith(name):
            how = f"use {instead}" if instead else "lab sets it itself"
            raise ConfigError(f"--sbatch-arg {arg!r}: --{reserved} cannot be passed through "
                              f"({how})")
    return name


def time_limit_seconds(limit: str | None) -> int | None:
    """Seconds in a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S); None when there
    is none (not given, 0, unlimited)."""
    match = _TIME_PARTS.fullmatch(limit or "")
    if match is None:
        return None
    days, a, b, c = (int(x) if x is not None else None for x in match.groups())
    if days is not None:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif b is None:
        seconds = a * 60
    elif c is None:
        seconds = a * 60 + b
    else:
        seconds = a * 3600 + b * 60 + c
    return seconds or None


def signal_lead(limit: str | None) -> int:
    """Seconds before the time limit at which the job is asked to stop: SIGNAL_LEAD_S, or a
    quarter of a shorter limit, so a short job still trains most of its time. Slurm looks at
    time limits every 30 s and may send the signal up to a minute early; the job only ever
    gets more time to write its checkpoint, never less."""
    seconds = time_limit_seconds(limit)
    return SIGNAL_LEAD_S if seconds is None else max(1, min(SIGNAL_LEAD_S, seconds // 4))


@dataclass(frozen=True)
class SlurmState:
    """One job as Slurm reports it."""

    slurm_id: str
    state: str  # Slurm's word: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, ...
    reason: str | None = None
    source: str = "squeue"  # or "sacct"

    @property
    def lab_state(self) -> str | None:
        return SLURM_STATES.get(self.state)


# ---- submitting ---------------------------------------------------------------------------
def command(name: str, hint: str = "run it on a Slurm login node, or submit without --slurm "
                                   "for local workers") -> str:
    """The path of a Slurm command, or a one-line error naming what is missing."""
    path = shutil.which(name)
    if path is None:
        raise NotFoundError(f"{name} is not on PATH: this machine cannot reach Slurm", hint=hint)
    return path


def script_path(runs_dir: Path, job_id: int) -> Path:
    return Path(runs_dir) / "jobs" / f"{job_id}.sbatch"


def sbatch_script(job_id: int, label: str, runs_dir: Path, options: SlurmOptions,
                  python: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The batch script of one job: its sbatch options as #SBATCH lines (so the file can be
    resubmitted by hand), then `exec` of the job process, so scancel's SIGTERM reaches Python
    itself and the job records how it ended."""
    runs_dir = Path(runs_dir)
    python = python or sys.executable
    environ = os.environ if environ is None else environ
    data_dir = options.data_dir
    check_paths(runs_dir, options, python)
    options.check()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:40]
    lines = [
        "#!/bin/bash",
        f"# lab job {job_id} ({label}), written by `lab submit --slurm`: trains the job's config",
        "# into the runs directory below and records the outcome in its lab.db.",
        f"#SBATCH --job-name=lab-{job_id}-{name}",
        f"#SBATCH --output={job_log_path(runs_dir, job_id)}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={runs_dir}",
    ]
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.time:
        lines.append(f"#SBATCH --time={options.time}")
    if options.gpus > 0:
        lines.append(f"#SBATCH --gres=gpu:{options.gpus}")
    lines += [f"#SBATCH --{name}={value}" for name, value in options.named()
              if value is not None]
    if options.max_requeues > 0:  # the warning its process requeues itself on
        lines.append(f"#SBATCH --signal=B:USR1@{signal_lead(options.time)}")
    lines += [f"#SBATCH {arg}" for arg in options.extra]  # last: an own --signal wins
    lines.append("export PYTHONUNBUFFERED=1")
    lines += [f"export {key}={shlex.quote(environ[key])}" for key in PASS_ENV if key in environ]
    if options.gpus == 0:  # as a worker's CPU slot: no GPU it was not given
        lines.append("export CUDA_VISIBLE_DEVICES=")
    lines.append(f'echo "--- $(date "+%Y-%m-%d %H:%M:%S") job {job_id} on Slurm job '
                 '$SLURM_JOB_ID ($(hostname)) ---"')
    run = [python, "-m", "lab.jobrun", str(job_id), "--slurm", "--runs-dir", str(runs_dir)]
    if data_dir:
        run += ["--data-dir", data_dir]
    lines.append("exec " + " ".join(shlex.quote(part) for part in run))
    return "\n".join(lines) + "\n"


def check_paths(runs_dir: Path, options: SlurmOptions, python: str | None = None) -> None:
    """The script names these paths in #SBATCH lines and a command line: absolute, and
    nothing a shell or sbatch's own parser would split or expand."""
    for path in (str(runs_dir), options.data_dir or "", python or sys.executable):
        if path and (not _SAFE_PATH.fullmatch(path) or not Path(path).is_absolute()):
            raise ConfigError(f"{path!r}: a Slurm job needs absolute paths without spaces or "
                              "quotes", hint="use another --runs-dir / --data-dir")


def parse_sbatch_output(text: str) -> str:
    """`sbatch --parsable` prints `ID` or `ID;CLUSTER`."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    slurm_id = first.split(";")[0].strip()
    if not re.fullmatch(r"\d+", slurm_id):
        raise ValueError(f"sbatch printed no job id: {text.strip()[:200]!r}")
    return slurm_id


def submit(queue: JobQueue, configs: list[RunConfig], priority: int, options: SlurmOptions,
           runs_dir: Path) -> list[Job]:
    """Record the jobs (all or none), then sbatch each: a job sbatch refuses is marked failed
    with sbatch's error and the others go on. Without sbatch nothing is recorded."""
    command("sbatch")
    check_paths(Path(runs_dir).resolve(), options)
    jobs = queue.submit(configs, priority=priority, backend="slurm",
                        slurm_options=options.to_dict())
    return [sbatch_job(queue, job, runs_dir) for job in jobs]


def sbatch_job(queue: JobQueue, job: Job, runs_dir: Path) -> Job:
    """Write the job's script to runs/jobs/<id>.sbatch and submit it; records the Slurm id,
    or fails the job with sbatch's error."""
    try:
        queue.set_slurm_id(job.id, _submit_script(job, Path(runs_dir).resolve()))
    except (ConfigError, NotFoundError, RunFailed, OSError, ValueError,
            subprocess.TimeoutExpired) as exc:
        queue.settle(queue.get(job.id), State.FAILED, error=str(exc))
    return queue.get(job.id)


def _submit_script(job: Job, runs_dir: Path, after: str | None = None,
                   env: Mapping[str, str] | None = None) -> str:
    """(Re)write the job's script and sbatch it, to start only once Slurm job `after` has
    ended when given; returns the new Slurm id."""
    options = SlurmOptions.from_dict(job.slurm_options or {})
    path = script_path(runs_dir, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, sbatch_script(job.id, job.label, runs_dir, options).encode())
    argv = [command("sbatch"), "--parsable"]
    if after is not None:
        argv.append(f"--dependency=afterany:{after}")
    done = _run([*argv, str(path)], env=env)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RunFailed("sbatch failed: " + (lines[-1] if lines else
                                             f"exit code {done.returncode}"))
    return parse_sbatch_output(done.stdout)


def scancel(job: Job, slurm_id: str | None = None) -> None:
    """Ask Slurm to end the job (SIGTERM to a running one; a pending one never starts), or
    Slurm job `slurm_id` submitted for it. A job Slurm has already forgotten needs nothing."""
    slurm_id = slurm_id or job.slurm_id
    if not slurm_id:
        return
    try:
        done = _run([command("scancel", hint="the cancel is recorded and the job stops at its "
                             f"next batch; `scancel {slurm_id}` on a login node frees "
                             "its allocation now"), slurm_id])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(f"scancel {slurm_id} did not run: {exc}") from None
    if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
        lines = done.stderr.strip().splitlines()
        raise RunFailed(f"scancel {slurm_id} failed: "
                        f"{lines[-1] if lines else f'exit code {done.returncode}'}",
                        hint="the job still stops at its next batch: its cancel is recorded")


# ---- reading Slurm's view -----------------------------------------------------------------
def parse_squeue(text: str) -> dict[str, SlurmState]:
    """Lines of `squeue --format=%i|%T|%r`: id, state, reason."""
    found = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            continue
        reason = parts[2] if len(parts) > 2 and parts[2] not in ("", "None", "(null)") else None
        found[parts[0]] = SlurmState(parts[0], parts[1].upper(), reason, "squeue")
    return found


def parse_sacct(text: str) -> dict[str, SlurmState]:
    """Lines of `sacct --parsable2 --format=JobID,State`; job steps (`123.batch`) are skipped,
    `CANCELLED by 0` is CANCELLED, and a requeued job's last line wins."""
    found = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or not parts[0] or "." in parts[0] or not parts[1]:
            continue
        found[parts[0]] = SlurmState(parts[0], parts[1].split()[0].rstrip("+").upper(),
                                     None, "sacct")
    return found


def query(slurm_ids: Iterable[str], history: Iterable[str] = ()) -> dict[str, SlurmState] | None:
    """Slurm's view of these jobs: one `squeue` call, and one `sacct` call for those of
    `history` that squeue no longer lists. None when Slurm cannot be asked at all (no
    squeue here, or the controller does not answer): nothing is known then."""
    ids = sorted(set(slurm_ids), key=_id_key)
    if not ids:
        return {}
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        done = _run([squeue, "--noheader", "--states=all", f"--jobs={','.join(ids)}",
                     "--format=%i|%T|%r"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        if "invalid job id" not in done.stderr.lower():  # squeue's answer when it knows none
            return None
        found: dict[str, SlurmState] = {}
    else:
        found = {k: v for k, v in parse_squeue(done.stdout).items() if k in ids}
    missing = sorted(set(history) - set(found), key=_id_key)
    if missing:
        found.update({k: v for k, v in _sacct(missing).items() if k in missing})
    return found


def _sacct(ids: list[str]) -> dict[str, SlurmState]:
    """Finished jobs from accounting, or without accounting from the job completion file
    (jobcomp/filetxt); {} when neither is there."""
    sacct = shutil.which("sacct")
    if sacct is None:
        return {}
    base = [sacct, "--noheader", "--parsable2", f"--jobs={','.join(ids)}",
            "--format=JobID,State"]
    try:
        if _accounting["mode"] == "sacct":
            done = _run([*base, "--allocations"])
            if done.returncode == 0:
                return parse_sacct(done.stdout)
            if "accounting storage is disabled" not in done.stderr.lower():
                return {}
            _accounting["mode"] = "completion"
        done = _run([*base, "--completion"])
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_sacct(done.stdout) if done.returncode == 0 else {}


def reconcile(queue: JobQueue, jobs: list[Job],
              runs_dir: Path) -> tuple[list[Job], dict[int, SlurmState]]:
    """Apply Slurm's view to the Slurm jobs among `jobs` (one squeue call for all of them):
    a job Slurm has ended without the job recording it gets Slurm's state in the queue.
    Returns the jobs, updated, and what Slurm said per job id (absent: Slurm does not know
    the job, or could not be asked)."""
    now = time.time()
    mine = [j for j in jobs if j.backend == "slurm" and j.slurm_id
            and (j.state not in FINISHED or (j.finished or 0) > now - RECENT_S)]
    if not mine:
        return jobs, {}
    open_ids = [j.slurm_id or "" for j in mine if j.state not in FINISHED]
    found = query([j.slurm_id or "" for j in mine], history=open_ids)
    if found is None:
        return jobs, {}
    seen: dict[int, SlurmState] = {}
    updated: dict[int, Job] = {}
    for job in mine:
        state = found.get(job.slurm_id or "")
        if state is not None:
            seen[job.id] = state
        if job.state in FINISHED:
            continue
        cause = requeue_cause(job, state)
        verdict = requeue_decision(cause, job.cancel_requested, len(requeue_history(job)),
                                   max_requeues(job))
        if verdict == "requeue" and cause is not None:
            updated[job.id] = requeue(queue, job, cause, runs_dir)
            seen.pop(job.id, None)  # what Slurm said was about the Slurm job that ended
            continue
        outcome = ((State.FAILED, exhausted_error(job, cause or "", state))
                   if verdict == "exhausted" else settled_state(job, state, runs_dir))
        if outcome is not None:
            queue.settle(job, *outcome)
            updated[job.id] = queue.get(job.id)  # settled, or what the job recorded meanwhile
    return [updated.get(j.id, j) for j in jobs], seen


def settled_state(job: Job, seen: SlurmState | None,
                  runs_dir: Path) -> tuple[str, str | None] | None:
    """The state (and error) to record for an unfinished Slurm job given Slurm's view, or
    None to leave it. `seen` None means squeue (and sacct) no longer know the job."""
    if seen is None:
        recorded = _run_state(job, runs_dir)
        if recorded in FINISHED:
            return recorded, job.error
        if job.cancel_requested:
            return State.CANCELLED, None
        return State.FAILED, (f"Slurm no longer knows job {job.slurm_id} and its run recorded no "
                          f"outcome; see `lab logs {job.id}`")
    lab_state = seen.lab_state
    if lab_state is None or lab_state == State.RUNNING:
        return None
    if lab_state == State.QUEUED:  # requeued by Slurm: its next start claims the job again
        return (State.INTERRUPTED, f"Slurm requeued job {job.slurm_id}") \
            if job.state == State.RUNNING else None
    if job.cancel_requested or lab_state == State.CANCELLED:
        return State.CANCELLED, None
    if lab_state == State.DONE:
        recorded = _run_state(job, runs_dir)
        if recorded in FINISHED:
            return recorded, job.error
        return State.FAILED, (f"Slurm job {job.slurm_id} completed but the job recorded no "
                          f"outcome; see `lab logs {job.id}`")
    why = f"{seen.state} ({seen.reason})" if seen.reason else seen.state
    return State.FAILED, f"Slurm ended job {job.slurm_id}: {why}; see `lab logs {job.id}`"


# ---- requeues after a time limit or a preemption ---------------------------------------------
def requeue_history(job: Job) -> list[dict[str, Any]]:
    """The requeues recorded with the job since it was submitted or last retried, oldest
    first: the Slurm job that ended, why, the attempt, when."""
    history = (job.slurm_options or {}).get("requeued")
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def max_requeues(job: Job) -> int:
    try:
        return SlurmOptions.from_dict(job.slurm_options or {}).max_requeues
    except ConfigError:  # options that are not lab's: no requeues, the job settles
        return 0


def requeue_cause(job: Job, seen: SlurmState | None) -> str | None:
    """Why an unfinished Slurm job might be requeued: Slurm ended it by its time limit
    (TIMEOUT) or by a preemption (PREEMPTED), or it stopped itself on the time-limit signal
    and could not submit its next Slurm job (SIGNAL: recorded `interrupted` with
    TIME_LIMIT_NOTE, and Slurm has let it go). None for any other case, a job Slurm still
    runs or requeued itself included."""
    if seen is not None and seen.state in ("TIMEOUT", "PREEMPTED"):
        return seen.state
    if (job.state == State.INTERRUPTED and (job.error or "").startswith(TIME_LIMIT_NOTE)
            and (seen is None or seen.state in ("COMPLETED", "FAILED"))):
        return "SIGNAL"
    return None


def requeue_decision(cause: str | None, cancel_requested: bool, requeues: int,
                     bound: int) -> str | None:
    """The requeue rule in one place, for the job itself and for listings: 'requeue' for a
    time limit, a preemption or the time-limit signal while fewer than `bound` requeues were
    made; 'exhausted' at the bound (the job fails, saying so); None for every other end
    (NODE_FAIL, FAILED, CANCELLED, COMPLETED, ...) or when a cancel is pending: the job then
    settles as Slurm's state says (`settled_state`)."""
    if cancel_requested or cause not in REQUEUE_CAUSES:
        return None
    return "requeue" if requeues < bound else "exhausted"


def exhausted_error(job: Job, cause: str, seen: SlurmState | None) -> str:
    """The error of a job that would be requeued but has used its requeues."""
    done, bound = len(requeue_history(job)), max_requeues(job)
    why = ("requeues are off for this job (--max-requeues 0)" if bound == 0 else
           f"requeued {done} time{'s' * (done != 1)} already (--max-requeues {bound})")
    if cause == "SIGNAL" or seen is None:
        head = f"Slurm job {job.slurm_id} stopped before its time limit with a checkpoint"
    else:
        head = f"Slurm ended job {job.slurm_id}: " + (
            f"{seen.state} ({seen.reason})" if seen.reason else seen.state)
    return f"{head}; not requeued: {why}; `lab retry {job.id}` resumes its run"


def _requeued(job: Job, cause: str) -> tuple[dict[str, Any], str]:
    """The job's options with this requeue recorded, and the note that says so."""
    history = [*requeue_history(job), {"slurm_id": job.slurm_id, "cause": cause,
                                       "attempt": job.attempts, "at": iso(time.time())}]
    note = (f"requeued {len(history)}/{max_requeues(job)}: Slurm job {job.slurm_id} "
            f"{_CAUSE_TEXT[cause]}; its run resumes from its checkpoint")
    return {**(job.slurm_options or {}), "requeued": history}, note


def requeue(queue: JobQueue, job: Job, cause: str, runs_dir: Path) -> Job:
    """Submit a job Slurm has let go (`requeue_decision` said so) for its next attempt, from
    a listing. Recorded first, only while the job is still as `job` was read and no cancel
    is pending, so two listings, or a listing and the job itself, never both submit it;
    a refusal by sbatch fails the job with sbatch's error."""
    options, note = _requeued(job, cause)
    if not queue.requeue_slurm(job, options, note):
        return queue.get(job.id)
    _log(runs_dir, job.id, note)
    return sbatch_job(queue, queue.get(job.id), runs_dir)


def requeue_itself(queue: JobQueue, job: Job, runs_dir: Path) -> str | None:
    """The end of a job process stopped by the time-limit signal, its checkpoint written:
    it submits its own next Slurm job, to start once this one has ended (so two never run
    at once), and the run goes on with nobody listing the queue. Past the bound the job
    fails saying so. Where sbatch cannot run (no client on the node, a refusal), the job is
    left `interrupted` with TIME_LIMIT_NOTE and the next listing requeues it. Returns the
    job's state, or None when a cancel arrived meanwhile (the caller records the cancel)."""
    current = queue.get(job.id)
    if current.state != State.RUNNING or current.attempts != job.attempts \
            or current.cancel_requested:
        return None
    if requeue_decision("SIGNAL", False, len(requeue_history(current)),
                        max_requeues(current)) == "exhausted":
        error = exhausted_error(current, "SIGNAL", None)
        queue.finish(job.id, job.attempts, State.FAILED, error=error)
        print(f"job {job.id} failed: {error}", flush=True)
        return State.FAILED
    try:
        if not re.fullmatch(r"\d+", current.slurm_id or ""):
            raise RunFailed(f"its Slurm job id is {current.slurm_id!r}")
        new_id = _submit_script(current, Path(runs_dir).resolve(), after=current.slurm_id,
                                env=_submit_env())
    except (ConfigError, NotFoundError, RunFailed, OSError, ValueError,
            subprocess.TimeoutExpired) as exc:
        error = (f"{TIME_LIMIT_NOTE}, checkpoint written; it could not submit its next Slurm "
                 f"job from here ({exc}): the next `lab queue` does")
        queue.finish(job.id, job.attempts, State.INTERRUPTED, error=error)
        print(f"job {job.id} {error}", flush=True)
        return State.INTERRUPTED
    options, note = _requeued(current, "SIGNAL")
    if queue.requeue_slurm(current, options, note, slurm_id=new_id):
        print(f"job {job.id} {note}: Slurm job {new_id}, once this one has ended", flush=True)
        return State.QUEUED
    with contextlib.suppress(RunFailed, NotFoundError):  # a cancel came first
        scancel(queue.get(job.id), new_id)
    return None


def _submit_env() -> dict[str, str]:
    """This job's environment without what Slurm set for it (SLURM_JOB_ID and the like),
    which the next job must not inherit; SLURM_CONF names the cluster and stays."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def _log(runs_dir: Path, job_id: int, note: str) -> None:
    """A line in the job's log (the Slurm output every attempt appends to)."""
    path = job_log_path(runs_dir, job_id)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"--- {now_text()} job {job_id} {note} ---\n")


def display_state(job: Job, seen: SlurmState | None) -> str:
    """What a listing shows: the job's own record once it has an outcome, else Slurm's view
    (a job Slurm has started is `running` even before its process claims it)."""
    if job.backend != "slurm" or job.state in FINISHED or seen is None:
        return job.display_state
    if seen.lab_state == State.QUEUED:
        return State.QUEUED
    if seen.lab_state == State.RUNNING:
        if job.cancel_requested:
            return "cancelling"
        return State.INTERRUPTED if job.state == State.INTERRUPTED else State.RUNNING
    return job.display_state


def _run_state(job: Job, runs_dir: Path) -> str | None:
    """The state its run's status.json records, if it has a run."""
    if not job.run_id:
        return None
    try:
        return RunDir(Path(runs_dir) / validate_run_ref(job.run_id)).status().get("state")
    except Exception:  # noqa: BLE001 - a missing or unreadable run records nothing
        return None


def _id_key(slurm_id: str) -> tuple[int, str]:
    head = slurm_id.split("_")[0]
    return (ascii_int(head) or 0, slurm_id)


def _run(argv: list[str],
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=COMMAND_TIMEOUT_S, env=None if env is None else dict(env))

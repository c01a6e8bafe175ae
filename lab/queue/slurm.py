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
Nothing here imports torch or Textual.
"""

from __future__ import annotations

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
from lab.queue.jobs import FINISHED, Job, JobQueue, job_log_path
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
_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|unlimited|infinite", re.IGNORECASE)
_SAFE_PATH = re.compile(r"[^\s\"'\\$`]+")
_accounting = {"mode": "sacct"}  # "completion" once sacct said accounting is disabled


@dataclass(frozen=True)
class SlurmOptions:
    """How a job is handed to sbatch; stored with the job so `lab retry` submits it alike."""

    partition: str | None = None
    gpus: int = 0
    time: str | None = None
    data_dir: str | None = None  # absolute: the node reads the same data cache

    @classmethod
    def checked(cls, partition: str | None = None, gpus: int = 0, time: str | None = None,
                data_dir: Path | str | None = None) -> SlurmOptions:
        """Refuse what sbatch would refuse (or misread) before anything is recorded."""
        if partition is not None and not _PARTITION.fullmatch(partition):
            raise ConfigError(f"--partition {partition!r}: expected a partition name "
                              "(letters, digits, '_', '-', '.'; several with commas)")
        if not 0 <= gpus <= 1024:
            raise ConfigError(f"--gpus-per-job {gpus}: must be between 0 and 1024")
        if time is not None and not _TIME.fullmatch(time):
            raise ConfigError(f"--time {time!r}: expected a Slurm time limit such as 30, "
                              "2:00:00 or 1-12:00:00")
        data = str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None
        return cls(partition, gpus, time, data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmOptions:
        return cls(data.get("partition"), int(data.get("gpus") or 0), data.get("time"),
                   data.get("data_dir"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    runs_dir = Path(runs_dir).resolve()
    options = SlurmOptions.from_dict(job.slurm_options or {})
    path = script_path(runs_dir, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_bytes(path, sbatch_script(job.id, job.label, runs_dir, options).encode())
        done = _run([command("sbatch"), "--parsable", str(path)])
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise RunFailed("sbatch failed: " + (lines[-1] if lines else
                                                 f"exit code {done.returncode}"))
        queue.set_slurm_id(job.id, parse_sbatch_output(done.stdout))
    except (ConfigError, NotFoundError, RunFailed, OSError, ValueError,
            subprocess.TimeoutExpired) as exc:
        queue.settle(queue.get(job.id), State.FAILED, error=str(exc))
    return queue.get(job.id)


def scancel(job: Job) -> None:
    """Ask Slurm to end the job (SIGTERM to a running one; a pending one never starts).
    A job Slurm has already forgotten needs nothing."""
    if not job.slurm_id:
        return
    try:
        done = _run([command("scancel", hint="the cancel is recorded and the job stops at its "
                             f"next batch; `scancel {job.slurm_id}` on a login node frees "
                             "its allocation now"), job.slurm_id])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(f"scancel {job.slurm_id} did not run: {exc}") from None
    if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
        lines = done.stderr.strip().splitlines()
        raise RunFailed(f"scancel {job.slurm_id} failed: "
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
        outcome = settled_state(job, state, runs_dir)
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


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=COMMAND_TIMEOUT_S)

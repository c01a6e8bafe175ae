"""The run directory: the contract between the engine and every client.

`runs/<run_id>/` holds `config.json`, `status.json`, `metrics.jsonl`, `result.json` and
`checkpoint.pt` (with `checkpoint.prev.pt`, see `lab.runs.checkpoint`). Whole files are written
atomically (temp file, fsync, rename) and events are appended one whole line per write, so a
reader in another process, or a crash at any instant, sees either the old record or the new one,
never half of one. Readers tolerate a run that is still being written: a torn last line of
`metrics.jsonl` is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.config import RunConfig
from lab.errors import ConfigError, DataError, LabError, NotFoundError, StorageError
from lab.runs.schema import State, check_config, check_event, check_result, check_status
from lab.shapes import MAX_DEPTH, too_deep

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get("LAB_RUNS_DIR") or "runs")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- atomic files --------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def append_jsonl(path: Path, event: dict[str, Any], sync: bool = False) -> None:
    """Append one event as one whole line with a single O_APPEND write."""
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # after a torn line (a crash mid-write): keep ours whole
        os.write(fd, line)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete, valid line; a torn or corrupt line is skipped rather than fatal."""
    return read_jsonl_counted(path)[0]


def read_jsonl_counted(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The valid events and how many lines could not be read (torn or corrupt), for readers
    that flag such a run instead of silently skipping."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    events, bad = [], 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge numbers
            bad += 1
            continue
        if check_event(obj) is None:
            events.append(obj)
        else:
            bad += 1
    return events, bad


def read_json(path: Path) -> Any:
    """The JSON value in `path` (None when there is no file). Anything that is not JSON, or is
    JSON no reader could use (numbers of thousands of digits, nesting that would overflow the
    stack of whoever prints it), is a DataError naming the file."""
    try:
        return _load_json(path)
    except FileNotFoundError:
        return None


def _load_json(path: Path) -> Any:
    try:
        value = json.loads(Path(path).read_text())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge numbers
        raise DataError(f"{path} is corrupt: {type(exc).__name__}: {exc}"[:300]) from None
    if too_deep(value):
        raise DataError(f"{path} is corrupt: it nests deeper than {MAX_DEPTH} levels")
    return value


def read_record(path: Path, check: Callable[[Any], str | None]) -> Any:
    """A whole-file record checked against its schema (`lab.runs.schema`): None when there is
    no file, the value when it is well formed, a DataError naming the file and field if not."""
    try:
        value = _load_json(path)
    except FileNotFoundError:
        return None
    why = check(value)
    if why is not None:
        raise DataError(f"{path} is corrupt: {why}"[:300])
    return value


# ---- one run -------------------------------------------------------------------------------
@dataclass
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def config(self) -> RunConfig:
        """The run's config; a config.json that is not one is a DataError (exit 4), like any
        corrupt record, not a usage error: nobody typed it on this command line."""
        data = read_record(self.config_path, check_config)
        if data is None:
            raise NotFoundError(f"run {self.id} has no config.json")
        try:
            return RunConfig.from_dict(data, strict=False)
        except ConfigError as exc:
            raise DataError(f"{self.config_path} is corrupt: {exc.message}"[:300]) from None

    def status(self) -> dict[str, Any]:
        """`status.json`, checked; a run whose status was never written reads as created."""
        return read_record(self.status_path, check_status) or {"state": State.CREATED.value}

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def result(self) -> dict[str, Any] | None:
        """`result.json`, checked; None before the run has finished."""
        return read_record(self.result_path, check_result)

    def check_records(self) -> None:
        """Read every whole-file record, raising DataError for the first corrupt one: what a
        command that will write into the run (resume) calls before it writes anything."""
        self.config()
        self.status()
        self.result()

    def update_status(self, **fields: Any) -> dict[str, Any]:
        status = {**self.status(), **fields, "updated": now_iso()}
        atomic_write_json(self.status_path, status)
        return status

    def append_event(self, event: dict[str, Any], sync: bool = False) -> None:
        append_jsonl(self.metrics_path, event, sync=sync)

    def keep_events_through(self, epoch: int, step: int | None = None) -> None:
        """Drop events of epochs after `epoch` (a resumed run redoes them), atomically; with
        `step`, the step events of epoch + 1 up to it stay (a run stopped mid-epoch)."""
        def kept_event(e: dict[str, Any]) -> bool:
            e_epoch = int(e.get("epoch", 0))
            return e_epoch <= epoch or (step is not None and e_epoch == epoch + 1 and
                                        e.get("event") == "step" and int(e.get("step", 0)) <= step)
        kept = [e for e in self.events() if kept_event(e)]
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept)
        atomic_write_bytes(self.metrics_path, body.encode())

    def live_state(self) -> str:
        """The state a reader should show: a 'running' run whose process is gone is interrupted
        (and so is one whose pid now belongs to another process: see `pid_alive`)."""
        status = self.status()
        state = status.get("state", State.CREATED)
        if state in (State.CREATED, State.RUNNING) and "pid" in status and \
                not pid_alive(status.get("pid"), status.get("host"), status.get("pid_start")):
            return State.INTERRUPTED.value
        return state


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None without it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int | None = None) -> str | None:
    """What tells a process from a later one that reuses its pid: the boot's id and the start
    time in clock ticks after boot (/proc/PID/stat, field 22), or psutil's create time where
    there is no /proc; None when neither can tell. Recorded with the pid in status.json."""
    pid = os.getpid() if pid is None else pid
    fields = _proc_stat(pid)
    if fields is not None and len(fields) > 19:
        return f"{_boot_id()}:{fields[19]}"
    try:
        import psutil  # optional: not a dependency
    except ImportError:
        return None
    try:
        return f"psutil:{psutil.Process(pid).create_time():.3f}"
    except Exception:  # noqa: BLE001 - gone, or not ours to ask
        return None


def pid_alive(pid: Any, host: Any = None, started: Any = None) -> bool:
    """Whether a process still runs. A zombie counts as dead: where nothing reaps orphans (some
    container inits), a killed job process stays a zombie and would otherwise look alive.
    With `started` (a `process_start` token recorded with the pid), a process whose start
    differs is another one that got the pid later, so the recorded one is dead; a record
    without it (an older lab) is judged by the pid alone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if host and host != os.uname().nodename:
        return True  # another machine's process: we cannot tell, so trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, OSError):  # a pid no kernel hands out
        return False
    fields = _proc_stat(pid)
    if fields is None and Path("/proc/self").exists():
        return False  # /proc exists but not this pid: it has just gone
    if fields and fields[0] in ("Z", "X"):
        return False
    if isinstance(started, str) and started:
        now = process_start(pid)
        if now is not None and now != started:
            return False
    return True


def validate_run_ref(ref: str) -> str:
    if not isinstance(ref, str) or not RUN_ID_RE.fullmatch(ref) or ".." in ref:
        hint = "that is a job: see `lab watch` or `lab queue`" \
            if isinstance(ref, str) and ref.startswith("#") else None
        raise ConfigError(f"{ref!r} is not a run id (letters, digits, '-', '_', '.'; no paths)",
                          hint=hint)
    return ref


def new_run(runs_dir: Path, config: RunConfig) -> RunDir:
    """Create `runs/<id>/` with its config; the id sorts by creation time and never collides."""
    runs_dir = writable_dir(Path(runs_dir))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        run_id = f"{stamp}-{config.label.lower()}-{secrets.token_hex(2)}"
        path = runs_dir / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        run = RunDir(path)
        # The status first, with our pid: a run is listed once its config exists, and if this
        # process dies before training starts, readers see it as interrupted, not "created".
        run.update_status(state=State.CREATED, created=now_iso(), epoch=0, step=0,
                          pid=os.getpid(), pid_start=process_start(), host=os.uname().nodename)
        atomic_write_bytes(run.config_path, (config.to_json() + "\n").encode())
        return run
    raise RuntimeError("could not allocate a run id")


def list_runs(runs_dir: Path) -> list[RunDir]:
    """All run directories, newest first (ids sort by creation time)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [RunDir(p) for p in runs_dir.iterdir()
            if p.is_dir() and RUN_ID_RE.match(p.name) and (p / "config.json").exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


# A name as the console's list shows it: "L3 145d" (level, end of the id), "run 145d" (no level).
_LABEL_RE = re.compile(
    r"(?:[Ll](?P<level>[0-9]{1,3})|run|custom)[ \t_-]+(?P<tail>[A-Za-z0-9]{1,32})")
_SHOWN_MATCHES = 6  # candidates named in an "ambiguous" error


def resolve_run(runs_dir: Path, ref: str) -> RunDir:
    """A run by id, `latest`, a unique prefix or suffix of its id (any case), or the name the
    console shows for it (`L3 145d`, `l3-145d`, `run 145d`). Ids with path parts are refused;
    a ref that fits several runs is a one-line error naming them."""
    text = ref.strip()
    label = _LABEL_RE.fullmatch(text)
    if label is None:
        validate_run_ref(text)
    runs = list_runs(runs_dir)
    if not runs:
        why = runs_dir_problem(runs_dir) or f"no runs in {runs_dir}"
        raise NotFoundError(f"no run {text!r}: {why}",
                            hint="start one with `lab run --level 1`, or give --runs-dir")
    if text == "latest":
        return runs[0]
    exact = [r for r in runs if r.id == text]
    if exact:
        return exact[0]
    found = {r.id: r for r in _matching(runs, text, label)}
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        ids = sorted(found)
        more = f" and {len(ids) - _SHOWN_MATCHES} more" if len(ids) > _SHOWN_MATCHES else ""
        raise ConfigError(f"run {text!r} is ambiguous: it matches "
                          f"{', '.join(ids[:_SHOWN_MATCHES])}{more}", hint="give more of the id")
    raise NotFoundError(f"no run {text!r} in {runs_dir}", hint="see `lab runs`")


def _matching(runs: list[RunDir], text: str, label: re.Match[str] | None) -> list[RunDir]:
    """Runs whose id starts or ends with `text`, or that the console would call `text`."""
    key = text.lower()
    found = [r for r in runs if r.id.lower().startswith(key) or r.id.lower().endswith(key)]
    if label is not None:
        tail, level = label["tail"].lower(), label["level"]
        found += [r for r in runs if r.id.lower().endswith(tail)
                  and _level_of(r) == (int(level) if level else None)]
    return found


def _level_of(run: RunDir) -> int | None:
    """The run's level from its config, or from its id (`...-l3-145d`) when that is corrupt."""
    try:
        return run.config().level
    except (LabError, OSError):
        match = re.search(r"-l([0-9]+)-[^-]*$", run.id)
        return int(match[1]) if match else None


def runs_dir_problem(runs_dir: Path) -> str | None:
    """Why `runs_dir` cannot be read as a runs directory (missing, or not a directory), or
    None: a reader shows it as a warning instead of an empty list that looks like no runs."""
    path = Path(runs_dir)
    if not path.exists():
        return f"runs directory {path} does not exist"
    if not path.is_dir():
        return f"runs directory {path} is not a directory"
    return None


def writable_dir(path: Path, what: str = "runs directory") -> Path:
    """Create `path` (with its parents) after checking that it can be written: a StorageError
    naming the directory and the problem (not a directory, read-only file system, permission
    denied) instead of whatever the first write deep inside would say."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    where = f"{what} {path}" if probe == path else f"cannot create {what} {path}: {probe}"
    if not probe.is_dir():
        raise StorageError(f"{where} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"{where} is on a read-only file system" if _read_only_fs(probe)
                           else f"{where} is not writable (permission denied)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    return path


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def disk_bytes(path: Path) -> int:
    """The bytes of every file under `path` (what `lab runs` shows and pruning frees); files
    that vanish while it counts (a checkpoint being replaced) are skipped."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
    return total


def summarize(run: RunDir, disk: bool = False) -> dict[str, Any]:
    """One row for lists (CLI table, TUI list); a corrupt record marks that run, not the list.
    `disk` adds `disk_bytes` (a walk of the run's files: `lab runs` asks, the console not)."""
    row: dict[str, Any] = {"run_id": run.id}
    if disk:
        row["disk_bytes"] = disk_bytes(run.path)
    try:
        config = run.config()
        status = run.status()
        result = run.result() or {}
        epochs = [e for e in run.events() if e.get("event") == "epoch"]
    except (LabError, OSError) as exc:  # an unreadable record: shown on this row only
        return {**row, "state": "corrupt", "error": str(exc)}
    row.update(
        level=config.level, model=config.model, dataset=config.dataset, epochs=config.epochs,
        state=run.live_state(), epoch=epochs[-1]["epoch"] if epochs else 0,
        val_acc=epochs[-1].get("val_acc") if epochs else None,
        test_acc=result.get("test_acc"), error=status.get("error"),
        created=status.get("created"), updated=status.get("updated"),
        pruned=status.get("pruned"),
    )
    return row

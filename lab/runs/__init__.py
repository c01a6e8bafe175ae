"""The run records: one directory per run (`store`), their vocabulary (`schema`), and verified
checkpoints (`checkpoint`, the one part that needs torch, so it is not imported here)."""

from lab.runs.schema import (
    CLAIMABLE,
    JOB_FINISHED,
    JOB_STATES,
    RUN_FINISHED,
    RUN_STATES,
    State,
    check_config,
    check_event,
    check_result,
    check_status,
)
from lab.runs.store import (
    RUN_ID_RE,
    RunDir,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    default_runs_dir,
    disk_bytes,
    list_runs,
    new_run,
    now_iso,
    pid_alive,
    process_start,
    read_json,
    read_jsonl,
    read_jsonl_counted,
    read_record,
    resolve_run,
    runs_dir_problem,
    summarize,
    validate_run_ref,
    writable_dir,
)

__all__ = [
    "CLAIMABLE", "JOB_FINISHED", "JOB_STATES", "RUN_FINISHED", "RUN_STATES", "RUN_ID_RE", "RunDir",
    "State", "append_jsonl", "atomic_write_bytes", "atomic_write_json", "check_config",
    "check_event", "check_result", "check_status", "default_runs_dir", "disk_bytes", "list_runs",
    "new_run", "now_iso", "pid_alive", "process_start", "read_json", "read_jsonl",
    "read_jsonl_counted", "read_record", "resolve_run", "runs_dir_problem", "summarize",
    "validate_run_ref", "writable_dir",
]

"""The job queue: the SQLite store (`db`), jobs and their state machine (`jobs`), what the CLI
and TUI do to jobs (`actions`), workers (`worker`), the job process's body (`jobrun`) and the
Slurm backend (`slurm`). Nothing here imports torch: `lab submit` answers at once."""

from lab.queue.jobs import (
    CLAIMABLE,
    FINISHED,
    MAX_PRIORITY,
    Job,
    JobQueue,
    WorkerRow,
    check_priority,
    host_name,
    job_log_path,
    parse_job_id,
)

__all__ = ["CLAIMABLE", "FINISHED", "MAX_PRIORITY", "Job", "JobQueue", "WorkerRow",
           "check_priority", "host_name", "job_log_path", "parse_job_id"]

"""One exception family for every failure a user can cause or fix, each mapped to an exit code.

Commands raise these; the CLI turns them into a single line and the matching exit status, so
every command fails the same way and scripts can tell a usage error from a failed run.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the run or operation itself failed
    USAGE = 2  # bad arguments or configuration
    NOT_FOUND = 3  # a run, dataset or weights file that is not there
    DATA = 4  # corrupt or unreadable input data
    IO = 74  # the file system refused (read-only, full disk, permissions); sysexits EX_IOERR
    BUSY = 75  # the queue database is locked by another process: try again; EX_TEMPFAIL
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; a run stopped this way can be resumed


class LabError(Exception):
    """Base of the errors a user sees as one line; ``hint`` names the way out."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(LabError):
    """``key``: the config field at fault, when one is (a config file names its line)."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None, key: str | None = None) -> None:
        super().__init__(message, hint)
        self.key = key


class NotFoundError(LabError):
    exit_code = ExitCode.NOT_FOUND


class DataError(LabError):
    exit_code = ExitCode.DATA


class WeightsError(LabError):
    exit_code = ExitCode.NOT_FOUND


class MissingExtra(LabError):
    """An optional dependency the command needs is not installed (`lab.extras` names it)."""

    exit_code = ExitCode.NOT_FOUND


class RunFailed(LabError):
    exit_code = ExitCode.FAILED


class StorageError(LabError):
    """The file system refused a write or read that the input did not cause."""

    exit_code = ExitCode.IO


class BusyError(LabError):
    exit_code = ExitCode.BUSY


def describe_os_error(exc: OSError) -> StorageError:
    """`[Errno 30] Read-only file system: 'runs/x'` as one line that names the path."""
    where = f" {exc.filename}" if exc.filename else ""
    return StorageError(f"cannot write or read{where}: {exc.strerror or exc}")

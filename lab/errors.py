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
    INTERRUPTED = 130


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
    exit_code = ExitCode.USAGE


class NotFoundError(LabError):
    exit_code = ExitCode.NOT_FOUND


class DataError(LabError):
    exit_code = ExitCode.DATA


class WeightsError(LabError):
    exit_code = ExitCode.NOT_FOUND


class RunFailed(LabError):
    exit_code = ExitCode.FAILED

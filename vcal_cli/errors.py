"""Typed errors for problems a user can fix.

Library code raises these; only `vcal_cli.cli` turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class VcalError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class Terminated(BaseException):  # not an error of the input: SIGTERM (a scheduler, `kill`, a CI timeout)
    """Raised by the SIGTERM handler the CLI installs, so a terminated run unwinds like an interrupted one."""


class WorkerFinished(Exception):  # not an error: the normal end of a torchrun rank > 0
    """Raised on ranks > 0 when their share of the work is done; the CLI exits 0 on it."""


class CheckpointError(VcalError):
    """A checkpoint cannot be read, trusted or matched to an architecture."""


class DataError(VcalError):
    """A data set is missing, empty, malformed or does not fit the model."""


class CacheError(VcalError):
    """The feature cache cannot be read or written."""


class MetricError(VcalError):
    """Inputs to a metric are invalid (NaN, wrong shape, labels out of range)."""


class HeadError(VcalError):
    """A head cannot be fitted (bad features, divergence) or used (not fitted)."""


class NotFittedError(HeadError):
    """A head was used before `fit`."""


class ReportError(VcalError):
    """A report cannot be written or read."""


class UsageError(VcalError):
    """A flag value or combination of flags is invalid."""


class VcalWarning(UserWarning):
    """Something vcal repaired on its own and the user should know (a damaged cache entry rebuilt). The CLI shows
    each as one `warning:` line; library users get it through Python's `warnings`."""

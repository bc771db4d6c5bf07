"""One exception hierarchy; the class decides the exit code.

Scripts and runbooks branch on exit codes, so a code must mean the same thing wherever the
error is raised: the CLI never picks a code itself, it asks the exception.
"""

from __future__ import annotations

from typing import ClassVar


class PgsyncError(Exception):
    """An expected failure, reported to the user as one line (no traceback)."""

    exit_code: ClassVar[int] = 1
    default_code: ClassVar[str] = "failed"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        #: Stable machine-readable code (the HTTP API's error bodies carry it).
        self.code = code or self.default_code


class OperationFailed(PgsyncError):
    """The operation was attempted and did not succeed."""


class UsageError(PgsyncError):
    """Bad arguments or configuration: nothing was attempted."""

    exit_code = 2
    default_code = "usage"


class ConfigError(UsageError):
    default_code = "config"


class PreconditionFailed(PgsyncError):
    """Refused: a precondition does not hold, and nothing was changed."""

    exit_code = 3
    default_code = "refused"


class ServerUnreachable(PgsyncError):
    """A server the operation needs could not be reached."""

    exit_code = 4
    default_code = "unreachable"


class DeadlineExceeded(OperationFailed):
    """A wait ran past its deadline; the message says what it waited for and what it saw."""

    default_code = "timeout"


class ClusterError(OperationFailed):
    """A local cluster (initdb, pg_ctl) could not be created, started or stopped."""

    default_code = "cluster"

"""One exception hierarchy; the class decides the exit code.

Scripts and runbooks branch on exit codes, so a code must mean the same thing wherever the
error is raised: the CLI never picks a code itself, it asks the exception. An error code that
travelled as a string (a sync's outcome, recorded and reported later) is turned back into its
exception by `error_for`, so the exit code and the HTTP status of a code are decided here only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class PgsyncError(Exception):
    """An expected failure, reported to the user as one line (no traceback)."""

    exit_code: ClassVar[int] = 1
    #: The HTTP status of the class; a code may have its own (`http_status`).
    http_status_of_class: ClassVar[int] = 500
    default_code: ClassVar[str] = "failed"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        #: Stable machine-readable code (the HTTP API's error bodies carry it).
        self.code = code or self.default_code


class OperationFailed(PgsyncError):
    """The operation was attempted and did not succeed."""

    http_status_of_class = 502


class UsageError(PgsyncError):
    """Bad arguments or configuration: nothing was attempted."""

    exit_code = 2
    http_status_of_class = 422
    default_code = "usage"


class ConfigError(UsageError):
    default_code = "config"


class PreconditionFailed(PgsyncError):
    """Refused: a precondition does not hold, and nothing was changed."""

    exit_code = 3
    http_status_of_class = 409
    default_code = "refused"


class ServerUnreachable(PgsyncError):
    """A server the operation needs could not be reached."""

    exit_code = 4
    http_status_of_class = 503
    default_code = "unreachable"


class DeadlineExceeded(OperationFailed):
    """A wait ran past its deadline; the message says what it waited for and what it saw."""

    http_status_of_class = 504
    default_code = "timeout"


class ClusterError(OperationFailed):
    """A local cluster (initdb, pg_ctl) could not be created, started or stopped."""

    default_code = "cluster"


#: Every error code the product emits -> the class it stands for (so its exit code). A code
#: missing here fails tests/unit/test_errors.py. docs/troubleshooting.md#error-codes lists them.
CLASS_BY_CODE: dict[str, type[PgsyncError]] = {
    # nothing was attempted
    "usage": UsageError,
    "config": ConfigError,
    "invalid_request": UsageError,
    "invalid_url": UsageError,
    # refused, nothing changed
    "refused": PreconditionFailed,
    "already_replica": PreconditionFailed,
    "busy": PreconditionFailed,
    "paused": PreconditionFailed,
    "enrollment_pending": PreconditionFailed,
    "enrollment_refused": PreconditionFailed,
    "face_model_mismatch": PreconditionFailed,
    "forbidden": PreconditionFailed,
    "insecure_authentication": PreconditionFailed,
    "invalid_password": PreconditionFailed,
    "leader_list_already_replicated": PreconditionFailed,
    "leader_list_not_found": PreconditionFailed,
    "leader_login_refused": PreconditionFailed,
    "leader_not_set_up": PreconditionFailed,
    "list_not_empty": PreconditionFailed,
    "local_list_not_found": PreconditionFailed,
    "login_lost": PreconditionFailed,
    "login_refused": PreconditionFailed,
    "no_capacity": PreconditionFailed,
    "node_copied": PreconditionFailed,
    "node_promoted": PreconditionFailed,
    "relay_list_id": PreconditionFailed,
    "relay_list_published": PreconditionFailed,
    "migration_refused": PreconditionFailed,
    "node_not_set_up": PreconditionFailed,
    "not_a_leader": PreconditionFailed,
    "not_a_replica": PreconditionFailed,
    "not_promoted": PreconditionFailed,
    "not_enrolled": PreconditionFailed,
    "not_found": PreconditionFailed,
    "not_migrated": PreconditionFailed,
    "preflight_failed": PreconditionFailed,
    "read_only_token": PreconditionFailed,
    "revoked": PreconditionFailed,
    "schema_mismatch": PreconditionFailed,
    "sync_token_refused": PreconditionFailed,
    "token_exists": PreconditionFailed,
    "token_mismatch": PreconditionFailed,
    "unauthorized": PreconditionFailed,
    "wrong_role": PreconditionFailed,
    # a server is not there
    "unreachable": ServerUnreachable,
    "authentication_failed": ServerUnreachable,
    # attempted, and it failed
    "failed": OperationFailed,
    "skipped": OperationFailed,
    "not_published": OperationFailed,
    "subscription_failed": OperationFailed,
    "cluster": ClusterError,
    "timeout": DeadlineExceeded,
    # a bug: only the HTTP API reports it with a code (the CLI points at a crash report)
    "internal": PgsyncError,
}

#: The codes whose HTTP status is not their class's (docs/http-api.md has the table).
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "local_list_not_found": 422,
    "leader_list_not_found": 422,
    "relay_list_id": 422,
    "not_a_replica": 404,
    "not_found": 404,
    "unauthorized": 401,
    "forbidden": 403,
    "sync_token_refused": 403,
    "read_only_token": 403,
    "node_not_set_up": 503,
    "not_migrated": 503,
    "wrong_role": 503,
}

#: A sync's own outcomes, which the next sync or tick settles by itself: a `sync` of several
#: lists that ended so has failed (exit 1), it was not refused.
_RETRIED_BY_NEXT_SYNC = frozenset({"busy", "paused"})


def error_for(code: str | None) -> type[PgsyncError]:
    """The exception class (so the exit code and the HTTP status) that an error code stands
    for; an unknown code is a failure of the operation."""
    return CLASS_BY_CODE.get(code or "failed", OperationFailed)


def error_for_all(codes: Iterable[str | None]) -> type[PgsyncError]:
    """The class of a command that failed for several lists at once (`sync`): the class every
    code stands for when they agree, else a failure (exit 1)."""
    kinds = {OperationFailed if code in _RETRIED_BY_NEXT_SYNC else error_for(code) for code in codes}
    return kinds.pop() if len(kinds) == 1 else OperationFailed


def http_status(error: PgsyncError) -> int:
    """The HTTP status an error is answered with: its code's, else its class's."""
    return HTTP_STATUS_BY_CODE.get(error.code, type(error).http_status_of_class)

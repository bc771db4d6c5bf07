"""Connections, server probes, advisory locks and named queries.

Every connection says who it is (application_name) and bounds its statements, so a DBA can
tell our sessions apart in pg_stat_activity and none of them can hang forever.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.abc import ConnDict
from psycopg.rows import DictRow, dict_row

from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable, UsageError
from pgsync_dossier.resources import sql_dir

APPLICATION_NAME = "pgsync-dossier"
DEFAULT_STATEMENT_TIMEOUT_MS = 60_000
DEFAULT_CONNECT_TIMEOUT_S = 10
MIN_SERVER_VERSION = 150000
#: How many times a copy or a repair runs in all when PostgreSQL makes it a deadlock's victim.
DEADLOCK_ATTEMPTS = 3

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Every connection returns rows as psycopg's dict_row makes them.
Connection = psycopg.Connection[DictRow]


class AuthenticationFailed(ServerUnreachable):
    """The server answered but refused the login: not the same as being down."""

    default_code = "authentication_failed"


def connect(
    conninfo: str,
    *,
    what: str,
    autocommit: bool = True,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    login: Mapping[str, str] | None = None,
    application_name: str = APPLICATION_NAME,
) -> Connection:
    """Open a connection, turning libpq's failures into one line that names `what`.

    `login` holds libpq keywords (user, password) merged over `conninfo`; a password given
    there never appears in a message.
    """
    try:
        params: ConnDict = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise UsageError(
            f"invalid connection string for {what}: {mask_conninfo(conninfo)}; "
            "use a URL like postgresql://user@host:5432/dbname or key=value pairs"
        ) from None
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
    params.update(login or {})
    params["application_name"] = application_name
    # The orchestrator's own commits are durable when they return, whatever the server's
    # synchronous_commit: a node that crashed after an asynchronous commit would forget a
    # group whose slot the Leader keeps (and its WAL with it), or a link it already copied.
    # Local only: no commit of ours waits for a synchronous standby.
    params["options"] = f"-c statement_timeout={statement_timeout_ms} -c synchronous_commit=local"
    try:
        return psycopg.connect(
            psycopg.conninfo.make_conninfo("", **params), autocommit=autocommit, row_factory=dict_row
        )
    except psycopg.OperationalError as exc:
        raise _connect_error(exc, what, conninfo) from None


def _connect_error(exc: psycopg.OperationalError, what: str, conninfo: str) -> PgsyncError:
    reason = first_line(str(exc))
    where = mask_conninfo(conninfo)
    if re.search(r"invalid (\S+ value|connection option|integer value|port number)", reason):
        return UsageError(f"invalid connection string for {what} ({where}): {reason}")
    if "authentication method requirement" in reason:
        return PreconditionFailed(
            f"{what} ({where}) asked for the password in clear, as MD5 or not at all: nothing was "
            "sent; its pg_hba.conf must use scram-sha-256 for this login",
            code="insecure_authentication",
        )
    if re.search(r"password authentication failed|no password supplied|is not permitted to log in", reason):
        return AuthenticationFailed(f"{what} ({where}) refused the login: {reason}")
    if re.search(r'database ".*" does not exist', reason):
        return ServerUnreachable(f"{what} ({where}): {reason}; check the database name")
    return ServerUnreachable(f"cannot reach {what} ({where}): {reason}")


def again_after_deadlocks(work: Callable[[], T], deadline: Deadline, what: str) -> T:
    """`work()`, run again when PostgreSQL ends its transaction as a deadlock's victim.

    A copy or a repair writes rows that another group's stream may be writing too (a dossier
    moved between two groups' lists), in no order the two can agree on. When PostgreSQL breaks
    the deadlock by ending the stream's transaction, its apply worker retries it; when it ends
    ours, the conflict is gone once the stream commits, so `work` (which takes a new snapshot
    and a new transaction) runs again, within the command's deadline."""
    attempt = 1
    while True:
        try:
            return work()
        except psycopg.errors.DeadlockDetected:
            if attempt == DEADLOCK_ATTEMPTS or deadline.expired():
                raise
            log.info(
                "%s lost a deadlock (attempt %d of %d); running it again", what, attempt, DEADLOCK_ATTEMPTS
            )
            attempt += 1


def first_line(message: str) -> str:
    """The server's own words from a libpq or server error, without the connection preamble
    and without libpq's "This probably means the server terminated abnormally" boilerplate."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("This probably means"):
            lines = lines[:index]
            break
    # libpq prefixes each attempted address with 'connection to server at ... failed:'.
    for line in reversed(lines):
        if line.startswith(("FATAL:", "ERROR:")):
            return line.split(":", 1)[1].strip()
    return lines[-1] if lines else "unknown error"


def server_version(conn: Connection) -> int:
    return conn.info.server_version


def setting(conn: Connection, name: str) -> str:
    row = conn.execute(query("setting", "pg.sql"), {"name": name}).fetchone()
    assert row is not None
    return str(row["value"])


# -- advisory locks -----------------------------------------------------------------------
# One key space: the first int says what kind of thing is locked, the second which one.
LOCK_NAMESPACE = 0x7067_7364  # 'pgsd'

#: Every kind of advisory lock, Python's and SQL's. A function in sql/ takes its lock by number
#: with the kind named beside it (`-- lock: <kind>`); tests/unit/test_lock_keys.py checks that
#: the numbers are these. A database is a Leader's or a Subscriber's, and advisory locks belong
#: to one database: so "leader_enrollment" (a Leader's) and "list" (a Subscriber's) share 2.
LOCK_KINDS: dict[str, int] = {
    # On a Leader (sql/leader_api.sql and leader_admin.py).
    "leader_registration": 1,  # ident: pg_catalog.hashtext(group name)
    "leader_enrollment": 2,  # ident: 0; an approval never races an enrollment
    # On a Subscriber.
    "list": 2,
    "node": 3,
    "group": 4,
    "enrollment": 5,
    "verification": 6,
}


def lock_key(kind: str, ident: int) -> tuple[int, int]:
    return (LOCK_NAMESPACE + LOCK_KINDS[kind], ident)


def _lock_params(kind: str, ident: int) -> dict[str, int]:
    key, ident = lock_key(kind, ident)
    return {"kind": key, "ident": ident}


def try_advisory_lock(conn: Connection, kind: str, ident: int) -> bool:
    """Session-level lock: held until unlock or disconnect, so a crash releases it."""
    row = conn.execute(query("try_advisory_lock", "pg.sql"), _lock_params(kind, ident)).fetchone()
    return bool(row and row["locked"])


def advisory_lock(conn: Connection, kind: str, ident: int) -> None:
    """Session-level lock, waited for (within the connection's statement timeout)."""
    conn.execute(query("advisory_lock", "pg.sql"), _lock_params(kind, ident))


def advisory_unlock(conn: Connection, kind: str, ident: int) -> None:
    conn.execute(query("advisory_unlock", "pg.sql"), _lock_params(kind, ident))


def xact_advisory_lock(conn: Connection, kind: str, ident: int) -> None:
    """Transaction-level lock, released at commit or rollback."""
    conn.execute(query("advisory_xact_lock", "pg.sql"), _lock_params(kind, ident))


# -- named queries -------------------------------------------------------------------------
_QUERY_HEADER = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)


@functools.cache
def _queries(filename: str) -> dict[str, str]:
    text = (sql_dir() / filename).read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)
    return {name: _statement(body) for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _statement(body: str) -> str:
    """A query's text without the comment that introduces the next query, which would
    otherwise trail it into pg_stat_activity and the server log."""
    lines = body.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).rstrip().rstrip(";")


def query(name: str, filename: str, /, **parts: str | sql.Composable) -> sql.Composed:
    """A named query from sql/`filename`; `parts` fill its `{name}` placeholders: a str as a
    quoted identifier, a psycopg.sql object as it is (a Literal where the server takes no
    parameters: DDL, SET, COPY TO PROGRAM; a list of columns a statement is built with)."""
    template = sql.SQL(_queries(filename)[name])
    return template.format(**{k: sql.Identifier(v) if isinstance(v, str) else v for k, v in parts.items()})


def sql_file(filename: str) -> str:
    """A whole SQL script from sql/ (functions, triggers), run as one statement batch."""
    return (sql_dir() / filename).read_text(encoding="utf-8")

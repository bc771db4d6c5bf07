"""On a Leader: the Subscribers that enrolled, and the operator's say over each of them.

`approve` lets a Subscriber in (a new one under `enrollment: manual`, or a revoked one that
may enroll again); `revoke` locks one Subscriber out at once (no login, its streams ended)
without touching any other. Its slots stay unless asked otherwise, so that a Subscriber let
back in goes on where it stopped; meanwhile they keep WAL, which `revoke` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from psycopg.rows import class_row

from pgsync_dossier import pg
from pgsync_dossier.catalog import require_role
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PreconditionFailed

_SQL = "leader_admin.sql"


@dataclass(frozen=True)
class EnrolledSubscriber:
    """A row of `subscribers`: the fields in the order the table and --json show them."""

    node_name: str
    login: str
    state: str
    requested_at: datetime
    approved_at: datetime | None
    revoked_at: datetime | None
    streams: int
    streaming: int


@dataclass(frozen=True)
class _Login:
    """A row of pgsync.subscriber_login."""

    node_name: str
    login: str
    node_tag: str
    state: str
    requested_at: datetime
    approved_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Stream:
    """A Subscriber's stream (group) as its slot on this Leader holds WAL for it."""

    name: str
    retained_bytes: int | None


@dataclass(frozen=True)
class AdminResult:
    """What approve and revoke did; its fields, in this order, are their --json output."""

    node_name: str
    login: str
    state: str
    requested_at: datetime
    approved_at: datetime | None
    revoked_at: datetime | None
    changed: bool


@dataclass(frozen=True)
class RevokeResult(AdminResult):
    streams_dropped: list[str] = field(default_factory=list)
    streams_kept: list[Stream] = field(default_factory=list)


def _result(row: _Login, changed: bool) -> AdminResult:
    return AdminResult(
        row.node_name, row.login, row.state, row.requested_at, row.approved_at, row.revoked_at, changed
    )


def subscribers(config: Config) -> list[EnrolledSubscriber]:
    with (
        _leader(config, "subscribers") as conn,
        conn.cursor(row_factory=class_row(EnrolledSubscriber)) as cur,
    ):
        return cur.execute(pg.query("enrolled_subscribers", _SQL)).fetchall()


def approve(config: Config, node: str) -> AdminResult:
    with _leader(config, "approve") as conn, conn.transaction():
        row = _locked(conn, node)
        if row.state == "pending":
            conn.execute(pg.query("open_login", _SQL, login=row.login))
            state = "active"
        elif row.state == "revoked":
            state = "approved"  # its login stays closed until it enrolls with a new password
        else:
            return _result(row, changed=False)
        return _result(_set_state(conn, row.login, state), changed=True)


def revoke(config: Config, node: str, drop_streams: bool = False) -> RevokeResult:
    with _leader(config, "revoke") as conn:
        with conn.transaction():
            row = _locked(conn, node)
            conn.execute(pg.query("close_login", _SQL, login=row.login))
            updated = _set_state(conn, row.login, "revoked")
        # After the commit: a stream ended earlier could log in again before it.
        conn.execute(pg.query("end_sessions", _SQL), {"login": row.login})
        with conn.cursor(row_factory=class_row(Stream)) as cur:
            streams = cur.execute(pg.query("streams_of_subscriber", _SQL), {"tag": row.node_tag}).fetchall()
        if drop_streams:
            for stream in streams:
                conn.execute(pg.query("drop_stream", _SQL), {"name": stream.name})
        return RevokeResult(
            updated.node_name,
            updated.login,
            updated.state,
            updated.requested_at,
            updated.approved_at,
            updated.revoked_at,
            changed=row.state != "revoked",
            streams_dropped=[s.name for s in streams] if drop_streams else [],
            streams_kept=[] if drop_streams else streams,
        )


def _leader(config: Config, command: str) -> pg.Connection:
    conn = pg.connect(config.database_url, what="this Leader's database")
    try:
        require_role(conn, "leader", command)
    except BaseException:
        conn.close()
        raise
    return conn


def _locked(conn: pg.Connection, node: str) -> _Login:
    pg.xact_advisory_lock(conn, "leader_enrollment", 0)  # pgsync.api_enroll's: no race with an enrollment
    with conn.cursor(row_factory=class_row(_Login)) as cur:
        row = cur.execute(pg.query("subscriber_by_name", _SQL), {"node": node}).fetchone()
    if row is None:
        raise PreconditionFailed(
            f"no Subscriber {node!r} has enrolled on this Leader: see pgsync-dossier subscribers",
            code="not_found",
        )
    return row


def _set_state(conn: pg.Connection, login: str, state: str) -> _Login:
    with conn.cursor(row_factory=class_row(_Login)) as cur:
        updated = cur.execute(
            pg.query("set_subscriber_state", _SQL), {"login": login, "state": state}
        ).fetchone()
    assert updated is not None
    return updated

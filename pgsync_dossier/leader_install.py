"""The Leader's install, run by `setup` on a Leader: the logins, the replica identities its
publications need and its SQL API (sql/leader_api.sql); and what the Leader reads of its own
Subscribers (status, /metrics, prepare-upgrade).

A Subscriber never runs any of it: it calls the API over its own login (leader_client.LeaderClient).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import class_row, kwargs_row

from pgsync_dossier import __version__, catalog, pg
from pgsync_dossier.token import Secret, enrollment_password

#: The login the sync token opens: it may read the public facts and enroll, nothing else.
ENROLL_ROLE = "pgsync_enroll"
#: The group role of every Subscriber's own login (EXECUTE on the group API, SELECT on the
#: dossier tables); REPLICATION is an attribute, never inherited, so each login has its own.
SUBSCRIBER_ROLE = "pgsync_subscriber"
#: Before enrollment, one replication login shared by every Subscriber (its password derived
#: from the token): retired at the Leader's next setup.
LEGACY_ROLE = "pgsync_replicator"


class ListInfo(TypedDict):
    """A Leader list's name and rows, as pgsync.api_lists_info gives them (on either side)."""

    id: int
    name: str
    dossiers: int
    faces: int


@dataclass(frozen=True)
class RegisteredGroup:
    """On the Leader: a group a Subscriber registered, with its slot (None: no slot)."""

    name: str
    subscriber_node: str
    lists: list[int]
    slot_exists: bool
    active: bool
    wal_status: str | None
    lag_bytes: int | None  # WAL written since the Subscriber last confirmed
    retained_bytes: int | None  # WAL the slot keeps
    registered_at: datetime
    last_confirmed: datetime | None  # its last reply while streaming, else when the slot went idle (17+)
    active_pid: int | None  # the walsender streaming it now
    decoded_bytes: int | None  # what its walsenders decoded since the statistics began


def _query(name: str, **parts: str | sql.Composable) -> sql.Composed:
    return pg.query(name, "leader_install.sql", **parts)


def _role_exists(conn: pg.Connection, role: str) -> bool:
    return conn.execute(_query("role_exists"), {"role": role}).fetchone() is not None


def install(conn: pg.Connection, token: Secret, enrollment: str) -> None:
    """Create or update the logins and (re)install the API. Inside a transaction."""
    for role in (SUBSCRIBER_ROLE, ENROLL_ROLE):
        if not _role_exists(conn, role):
            conn.execute(_query("role_create", role=role))
    # Send a SCRAM verifier, never the password itself: statement logs must not hold it.
    verifier = conn.pgconn.encrypt_password(
        enrollment_password(token).reveal().encode(), ENROLL_ROLE.encode(), b"scram-sha-256"
    ).decode()
    conn.execute(_query("enroll_role_set", role=ENROLL_ROLE, verifier=sql.Literal(verifier)))
    conn.execute(_query("subscriber_role_set", role=SUBSCRIBER_ROLE))
    _retire_legacy_login(conn)
    catalog.set_enrollment(conn, enrollment)
    conn.execute(_query("replica_identities"))
    conn.execute(pg.sql_file("leader_api.sql").encode())
    catalog.settle_leader_identity(conn, __version__)


def _retire_legacy_login(conn: pg.Connection) -> None:
    """The shared replication login goes: its streams end now, and each Subscriber enrolls
    and points its subscriptions at its own login at its next sync or tick."""
    if not _role_exists(conn, LEGACY_ROLE):
        return
    conn.execute(_query("role_disable", role=LEGACY_ROLE))
    conn.execute(_query("terminate_sessions_of"), {"role": LEGACY_ROLE})
    conn.execute(_query("drop_owned_by", role=LEGACY_ROLE))
    try:
        with conn.transaction():
            conn.execute(_query("drop_role", role=LEGACY_ROLE))
    except psycopg.errors.DependentObjectsStillExist:
        pass  # it holds privileges in another database: disabled, it can do nothing


def registered_groups(conn: pg.Connection) -> list[RegisteredGroup]:
    """On the Leader: every Subscriber group, with its slot."""
    with conn.cursor(row_factory=class_row(RegisteredGroup)) as cur:
        return cur.execute(_query("registered_groups")).fetchall()


def lists_info(conn: pg.Connection, list_ids: list[int]) -> dict[int, ListInfo]:
    """On the Leader: name and rows of each list named (missing lists are absent)."""
    with conn.cursor(row_factory=kwargs_row(ListInfo)) as cur:
        rows = cur.execute(_query("lists_info"), {"lists": list_ids}).fetchall()
    return {row["id"]: row for row in rows}

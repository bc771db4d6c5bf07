"""On a Leader: the Subscribers that enrolled, and the operator's say over each of them.

`approve` lets a Subscriber in (a new one under `enrollment: manual`, or a revoked one that
may enroll again); `revoke` locks one Subscriber out at once (no login, its streams ended)
without touching any other. Its slots stay unless asked otherwise, so that a Subscriber let
back in goes on where it stopped; meanwhile they keep WAL, which `revoke` reports.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgsync_dossier import pg
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.node import require_role

#: The same lock as pgsync.api_enroll: an approval never races an enrollment.
_ENROLL_LOCK = (1885827942, 0)


def subscribers(config: Config) -> list[dict[str, Any]]:
    with _leader(config, "subscribers") as conn:
        return conn.execute(pg.query("enrolled_subscribers")).fetchall()


def approve(config: Config, node: str) -> dict[str, Any]:
    with _leader(config, "approve") as conn, conn.transaction():
        row = _locked(conn, node)
        login = sql.Identifier(row["login"])
        if row["state"] == "pending":
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(login))
            state = "active"
        elif row["state"] == "revoked":
            state = "approved"  # its login stays closed until it enrolls with a new password
        else:
            return {**_public(row), "changed": False}
        updated = conn.execute(
            pg.query("set_subscriber_state"), {"login": row["login"], "state": state}
        ).fetchone()
        assert updated is not None
        return {**_public(updated), "changed": True}


def revoke(config: Config, node: str, drop_streams: bool = False) -> dict[str, Any]:
    with _leader(config, "revoke") as conn:
        with conn.transaction():
            row = _locked(conn, node)
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(row["login"])))
            updated = conn.execute(
                pg.query("set_subscriber_state"), {"login": row["login"], "state": "revoked"}
            ).fetchone()
            assert updated is not None
        # After the commit: a stream ended earlier could log in again before it.
        conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = %s",
            [row["login"]],
        )
        streams = conn.execute(pg.query("streams_of_subscriber"), {"tag": row["node_tag"]}).fetchall()
        if drop_streams:
            for stream in streams:
                conn.execute("SELECT pgsync.api_drop_group(%s)", [stream["name"]])
        return {
            **_public(updated),
            "changed": row["state"] != "revoked",
            "streams_dropped": [s["name"] for s in streams] if drop_streams else [],
            "streams_kept": [] if drop_streams else streams,
        }


def _leader(config: Config, command: str) -> pg.Connection:
    conn = pg.connect(config.database_url, what="this Leader's database")
    try:
        require_role(conn, "leader", command)
    except BaseException:
        conn.close()
        raise
    return conn


def _locked(conn: pg.Connection, node: str) -> dict[str, Any]:
    conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s, %s)", _ENROLL_LOCK)
    row = conn.execute(pg.query("subscriber_by_name"), {"node": node}).fetchone()
    if row is None:
        raise PreconditionFailed(
            f"no Subscriber {node!r} has enrolled on this Leader: see pgsync-dossier subscribers",
            code="not_found",
        )
    return row


def _public(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("node_name", "login", "state", "requested_at", "approved_at", "revoked_at")
    return {key: row[key] for key in keys}

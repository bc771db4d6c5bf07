"""What happens on a Subscriber: triggers, subscriptions, copy progress, heartbeats, lag."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from pgsync_dossier import pg
from pgsync_dossier.errors import DeadlineExceeded, OperationFailed
from pgsync_dossier.leader import subscription_conninfo
from pgsync_dossier.token import Secret

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2


def install(conn: pg.Connection) -> None:
    """Replica identity by primary key, remap and guard triggers. Inside a transaction."""
    conn.execute(pg.sql_file("subscriber.sql").encode())


def node_tag(conn: pg.Connection) -> str:
    """Eight hex digits naming this Subscriber database among all of a Leader's Subscribers.

    Made from the cluster's system identifier and the database, not from node_name alone: two
    Subscribers configured with the same name (a cloned host) must not share slot names.
    """
    row = conn.execute(
        "SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text || '/' || "
        "pg_catalog.current_database() || '/' || n.node_name AS identity FROM pgsync.node n"
    ).fetchone()
    assert row is not None
    return hashlib.sha256(str(row["identity"]).encode()).hexdigest()[:8]


def link_names(tag: str, remote_list_id: int, local_list_id: int) -> str:
    """Subscription and slot name: unique per Subscriber (local list) and per Leader (node tag)."""
    return f"pgsync_l{remote_list_id}_{tag}_t{local_list_id}"


# Subscription names are unique per database only: always look in this one.
_THIS_DATABASE = "(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"


def subscription(conn: pg.Connection, name: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT s.oid, s.subenabled AS enabled, s.subslotname AS slot_name FROM pg_catalog.pg_subscription s "
        f"WHERE s.subname = %s AND s.subdbid = {_THIS_DATABASE}",
        [name],
    ).fetchone()


# Settings that would copy a statement's text (with its password) into logs or statistics.
_STATEMENT_TRACES = {
    "log_statement": "none",
    "log_min_duration_statement": "-1",
    "log_min_error_statement": "panic",
    "pg_stat_statements.track_utility": "off",
}


@contextmanager
def _secret_statement(conn: pg.Connection, what: str) -> Iterator[None]:
    """Run a statement that carries the replication password: keep it out of every log, give
    it time (slot creation waits for the Leader's running transactions), and turn its failure
    into one line that names the operation, not the statement."""
    for name, value in _STATEMENT_TRACES.items():
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(value)))
    conn.execute("SET statement_timeout = 0")
    try:
        yield
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or pg.first_line(str(exc))
        raise OperationFailed(f"{what} failed: {reason}", code="subscription_failed") from None
    finally:
        for name in (*_STATEMENT_TRACES, "statement_timeout"):
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(*name.split("."))))


def create_subscription(
    conn: pg.Connection, name: str, publication: str, leader_url: str, token: Secret, enabled: bool
) -> None:
    """Creates the slot on the Leader too; cannot run in a transaction block."""
    with _secret_statement(conn, f"creating the subscription {name}"):
        conn.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {publication} "
                "WITH (slot_name = {slot}, create_slot = true, copy_data = true, enabled = {enabled}, "
                "binary = true)"
            ).format(
                name=sql.Identifier(name),
                conninfo=sql.Literal(subscription_conninfo(leader_url, token)),
                publication=sql.Identifier(publication),
                slot=sql.Literal(name),
                enabled=sql.Literal(enabled),
            )
        )


def set_connection(conn: pg.Connection, name: str, leader_url: str, token: Secret) -> None:
    with _secret_statement(conn, f"updating the connection of {name}"):
        conn.execute(
            sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(
                sql.Identifier(name), sql.Literal(subscription_conninfo(leader_url, token))
            )
        )


def rotate_link_passwords(conn: pg.Connection, token: Secret) -> None:
    """After a token change, every subscription must log in with the new derived password."""
    for link in conn.execute("SELECT subscription_name, leader_url FROM pgsync.link").fetchall():
        if subscription(conn, link["subscription_name"]):
            set_connection(conn, link["subscription_name"], link["leader_url"], token)


def set_enabled(conn: pg.Connection, name: str, enabled: bool) -> None:
    verb = sql.SQL("ENABLE" if enabled else "DISABLE")
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} {}").format(sql.Identifier(name), verb))


def drop_subscription(conn: pg.Connection, name: str, leader_reachable: bool) -> bool:
    """Drop the subscription; True when its slot on the Leader went with it.

    Leader up: DROP also drops the slot there. Leader down (or refusing the slot drop): the
    subscription lets go of its slot first, and the caller must have the slot dropped later.
    """
    if subscription(conn, name) is None:
        return False
    ident = sql.Identifier(name)
    if leader_reachable:
        try:
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
            return True
        except psycopg.Error as exc:
            log.warning("dropping %s with its slot failed (%s): dropping it alone", name, exc)
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    return False


def table_states(conn: pg.Connection, name: str) -> dict[str, str]:
    """Per-table copy state: i (init), d (copying), f/s (synced), r (ready)."""
    rows = conn.execute(
        "SELECT r.srrelid::regclass::text AS rel, r.srsubstate AS state "
        "FROM pg_catalog.pg_subscription_rel r JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid "
        f"WHERE s.subname = %s AND s.subdbid = {_THIS_DATABASE}",
        [name],
    ).fetchall()
    return {row["rel"]: row["state"] for row in rows}


def copy_complete(conn: pg.Connection, name: str) -> bool:
    """Whether the initial copy of every table is done. Until then a window stays open: an
    interrupted table copy starts again from its first row."""
    states = table_states(conn, name)
    return bool(states) and all(state == "r" for state in states.values())


def _stats(conn: pg.Connection, name: str) -> dict[str, Any] | None:
    """This subscription's row of pg_stat_subscription_stats (columns differ by version)."""
    return conn.execute(
        "SELECT t.* FROM pg_catalog.pg_stat_subscription_stats t "
        "JOIN pg_catalog.pg_subscription s ON s.oid = t.subid "
        f"WHERE s.subname = %s AND s.subdbid = {_THIS_DATABASE}",
        [name],
    ).fetchone()


def _error_counts(row: dict[str, Any] | None) -> dict[str, int]:
    if row is None:
        return {"apply": 0, "sync": 0}
    return {"apply": int(row["apply_error_count"]), "sync": int(row["sync_error_count"])}


def error_counts(conn: pg.Connection, name: str) -> dict[str, int]:
    return _error_counts(_stats(conn, name))


def apply_problems(conn: pg.Connection, name: str) -> tuple[int, int | None]:
    """Copy/apply errors, and apply conflicts (rows missing or already there, ...), from one
    read of the statistics. PostgreSQL 18 counts conflicts in confl_* columns; 15 only logs
    them (None)."""
    row = _stats(conn, name)
    conflicts = [value for key, value in (row or {}).items() if key.startswith("confl_")]
    return sum(_error_counts(row).values()), (int(sum(conflicts)) if conflicts else None)


def list_counts(conn: pg.Connection, list_id: int) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM public.dossier WHERE dossier_list_id = %(l)s) AS dossiers, "
        "(SELECT count(*) FROM public.dossier_face WHERE dossier_list_id = %(l)s) AS faces",
        {"l": list_id},
    ).fetchone()
    assert row is not None
    return int(row["dossiers"]), int(row["faces"])


def heartbeat_seq(conn: pg.Connection, local_list_id: int) -> int | None:
    row = conn.execute("SELECT seq FROM pgsync.heartbeat WHERE list_id = %s", [local_list_id]).fetchone()
    return int(row["seq"]) if row else None


def wait_for_barrier(
    conn: pg.Connection,
    name: str,
    local_list_id: int,
    seq: int,
    timeout_s: float,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Until every table is copied and the apply worker has passed Leader heartbeat `seq`.

    A table in state 'r' is kept current by the apply worker, which applies the Leader's
    changes in commit order: once it has applied the heartbeat, it has applied everything
    committed before it.
    """
    deadline = time.monotonic() + timeout_s
    errors_before = error_counts(conn, name)
    while True:
        states = table_states(conn, name)
        seen = heartbeat_seq(conn, local_list_id)
        if on_progress:
            on_progress(*list_counts(conn, local_list_id))
        if states and all(state == "r" for state in states.values()) and seen is not None and seen >= seq:
            return
        errors = error_counts(conn, name)
        copy_errors = errors["sync"] - errors_before["sync"]
        apply_errors = errors["apply"] - errors_before["apply"]
        if copy_errors > 2 or apply_errors > 2:
            raise OperationFailed(
                f"replication into list {local_list_id} keeps failing ({copy_errors} copy and "
                f"{apply_errors} apply errors): see the Subscriber's server log"
            )
        if time.monotonic() > deadline:
            copying = ", ".join(f"{rel}={state}" for rel, state in sorted(states.items()) if state != "r")
            raise DeadlineExceeded(
                f"list {local_list_id} did not catch up with the Leader within {timeout_s:g}s "
                f"(heartbeat seen {seen if seen is not None else 'none'}, waiting for {seq}"
                + (f"; tables still copying: {copying}" if copying else "")
                + ")"
            )
        time.sleep(POLL_INTERVAL_S)

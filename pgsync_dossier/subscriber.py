"""What happens on a Subscriber's server: triggers, subscriptions, workers, heartbeats, capacity."""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import class_row, kwargs_row

from pgsync_dossier import pg, stall
from pgsync_dossier.deadline import Deadline, poll
from pgsync_dossier.errors import DeadlineExceeded, OperationFailed, PreconditionFailed
from pgsync_dossier.leader_client import GroupSlot, LeaderClient, Login, scram_only, stream_login
from pgsync_dossier.standby import FAILOVER_SLOTS_SINCE
from pgsync_dossier.token import Secret
from pgsync_dossier.window import lag_seconds

log = logging.getLogger(__name__)

#: How often a long wait checks that the Leader still answers and the worker is not failing.
HEALTH_CHECK_EVERY_S = 1.0
#: Apply errors counted during one wait before it gives up (the worker retries each one).
MAX_NEW_ERRORS = 2
#: How long a paused subscription's workers get to exit by themselves before they are stopped:
#: PostgreSQL 16+ wakes them at DISABLE, and they are gone in milliseconds. 15 looks once a
#: second, so there they are stopped at once (a grace cost every window's close 0.1 s, and
#: they were almost always stopped after it anyway).
STOP_GRACE_S = 0.1
WAKES_WORKERS_AT_DISABLE_SINCE = 160000
_SQL = "subscriber.sql"
#: The statements of the Subscriber's triggers, in the order `install` runs them.
_INSTALL = (
    "replica_identity",
    "drop_retired_functions",
    "create_applying_group",
    "create_apply_change",
    "create_guard_replica_list",
    "create_guard_replica_truncate",
    "create_triggers",
)


class Subscription(TypedDict):
    """A subscription of this database (`relations`: 0 after pg_upgrade from before 17)."""

    oid: int
    enabled: bool
    slot_name: str | None
    relations: int


class SubscriptionStats(TypedDict):
    """A subscription's state, errors and, on PostgreSQL 18, apply conflicts (None before)."""

    enabled: bool
    errors: int
    conflicts: int | None


@dataclass(frozen=True)
class Heartbeat:
    """A group's heartbeat as it reached this Subscriber: the Leader's last seq and when the
    Leader wrote it."""

    group_name: str
    seq: int
    beat_at: datetime


def heartbeats(conn: pg.Connection) -> dict[str, Heartbeat]:
    with conn.cursor(row_factory=class_row(Heartbeat)) as cur:
        return {row.group_name: row for row in cur.execute(pg.query("heartbeats", _SQL))}


def replica_lag(slot: GroupSlot | None, beat: Heartbeat | None) -> float | None:
    """window.lag_seconds of the group whose Leader-side row is `slot` and whose heartbeat
    here is `beat` (status and the probe's lag sample say the same)."""
    if slot is None:
        return None
    return lag_seconds(slot.seq, slot.leader_now, beat.seq if beat else None, beat.beat_at if beat else None)


def write_as_apply(conn: pg.Connection) -> None:
    """For the rest of this transaction, write as an apply worker does: replica mode, in which
    foreign keys and ordinary triggers do not fire, with the apply triggers told to stand by."""
    conn.execute(pg.query("write_as_apply", _SQL))


def install(conn: pg.Connection, *, by_primary_key: bool = True) -> None:
    """Replica identity by primary key (unless `by_primary_key` is False: a relay keeps the
    Leader's), apply and guard triggers. Inside a transaction."""
    for name in _INSTALL:
        if name != "replica_identity" or by_primary_key:
            conn.execute(pg.query(name, _SQL))


def subscription(conn: pg.Connection, name: str) -> Subscription | None:
    with conn.cursor(row_factory=kwargs_row(Subscription)) as cur:
        return cur.execute(pg.query("subscription", _SQL), {"name": name}).fetchone()


def subscriptions(conn: pg.Connection) -> dict[str, SubscriptionStats]:
    """Every subscription of this database with its state, errors and conflicts, in one read.

    PostgreSQL 18 counts apply conflicts (a row missing or already there) in confl_* columns;
    15 only logs them (None).
    """
    result: dict[str, SubscriptionStats] = {}
    for row in conn.execute(pg.query("subscriptions", _SQL)).fetchall():
        conflicts = [value for key, value in row.items() if key.startswith("confl_") and value is not None]
        result[row["subname"]] = SubscriptionStats(
            enabled=row["enabled"],
            errors=int(row["apply_error_count"] or 0) + int(row["sync_error_count"] or 0),
            conflicts=int(sum(conflicts)) if conflicts else None,
        )
    return result


def error_count(conn: pg.Connection, name: str) -> int:
    row = conn.execute(pg.query("subscription_errors", _SQL), {"name": name}).fetchone()
    return int(row["errors"]) if row else 0


# Settings that would copy a statement's text or parameters into logs or statistics.
_STATEMENT_TRACES = {
    "log_statement": "none",
    "log_min_duration_statement": "-1",
    "log_min_error_statement": "panic",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
}
#: The one line of a group's password file: any host, port, database and user (the
#: connection string names them), this password.
_PASSFILE_LINE = "*:*:*:*:{}"


def passfile_path(conn: pg.Connection, name: str) -> str:
    """Where a group's password file lives: in the data directory, which only the server's
    operating-system user can enter (mode 0700)."""
    return f"{pg.setting(conn, 'data_directory')}/{name}.pgpass"


def write_passfile(conn: pg.Connection, name: str, password: Secret) -> str:
    """Write the group's password file on the Subscriber's server; returns its path.

    The password travels only as a bound parameter into a transaction-local setting, with
    statement and parameter logging off for that transaction, and from there through a pipe
    into the file: no SQL text holds it (pg_stat_activity, statement logs, error logs). The
    file is written by `umask 077 && cat`, so it is 0600: COPY TO a file would make it 0644,
    which libpq refuses for a password file (and which anyone on the host could read).
    """
    secret = password.reveal()
    if any(ch in secret for ch in "\x00\x01\x02\n\r"):
        raise PreconditionFailed(
            "the Leader login's password contains a control character or a line break: "
            "choose another password for it",
            code="invalid_password",
        )
    path = passfile_path(conn, name)
    escaped = secret.replace("\\", "\\\\").replace(":", "\\:")
    with conn.transaction():
        for setting, value in _STATEMENT_TRACES.items():
            conn.execute(pg.query("hide_statement", _SQL, setting=setting, value=sql.Literal(value)))
        conn.execute(pg.query("set_passfile_line", _SQL), {"line": _PASSFILE_LINE.format(escaped)})
        program = sql.Literal(f"umask 077 && cat > {shlex.quote(path)}")
        conn.execute(pg.query("write_passfile", _SQL, program=program))
    return path


def passfile_password(line: str) -> str:
    """The password of a line write_passfile wrote (its escapes undone)."""
    escaped = line.rstrip("\n").split(":", 4)[4]
    return re.sub(r"\\(.)", r"\1", escaped)


def has_passfile(conn: pg.Connection, name: str) -> bool:
    row = conn.execute(pg.query("has_passfile", _SQL), {"path": passfile_path(conn, name)}).fetchone()
    return bool(row and row["present"])


def passfile_elsewhere(conn: pg.Connection, name: str, oid: int) -> bool:
    """Whether the subscription reads its password from another data directory than this
    server's (pg_upgrade from 17 on keeps the subscription, and so the old directory's path)."""
    row = conn.execute(pg.query("subscription_conninfo", _SQL), {"oid": oid}).fetchone()
    named = psycopg.conninfo.conninfo_to_dict(row["subconninfo"]).get("passfile") if row else None
    return named is not None and named != passfile_path(conn, name)


def remove_passfile(conn: pg.Connection, name: str) -> None:
    program = sql.Literal(f"rm -f -- {shlex.quote(passfile_path(conn, name))}")
    conn.execute(pg.query("remove_passfile", _SQL, program=program))


def _stream_conninfo(conn: pg.Connection, name: str, leader_url: str, login: Login) -> str:
    """The subscription's connection string: the password file, never the password; and, where
    the Subscriber's server has libpq 16 or later, SCRAM required (no cleartext downgrade)."""
    conninfo, password = stream_login(leader_url, login)
    passfile = write_passfile(conn, name, password)
    # The subscription's connection is made by the server, with its own libpq.
    return psycopg.conninfo.make_conninfo(conninfo, passfile=passfile, **scram_only(pg.server_version(conn)))


def create_subscription(
    conn: pg.Connection,
    name: str,
    leader_url: str,
    login: Login,
    enabled: bool,
    leader_version: int,
    create_slot: bool = True,
) -> None:
    """The group's subscription and its slot on the Leader (publication, subscription and slot
    share the group's name). No initial copy: the orchestrator copies each list itself. Its
    connection string names the password file, never the password. Cannot run in a
    transaction block; slot creation waits for the Leader's running transactions.

    Where both servers have failover slots, the slot is one: a Leader's standby that
    synchronizes slots keeps it, and the stream goes on from the promoted standby. The
    connection string keeps every host of a multi-host Leader URL, so the worker reconnects to
    whichever is the primary. On a relay the stream flushes at each commit (flush_each_commit)."""
    conninfo = _stream_conninfo(conn, name, leader_url, login)
    failover = min(pg.server_version(conn), leader_version) >= FAILOVER_SLOTS_SINCE
    relayed = is_relay(conn)
    conn.execute(pg.query("no_statement_timeout", _SQL))
    try:
        conn.execute(
            pg.query(
                "create_subscription",
                _SQL,
                failover=sql.SQL(", failover = true" if failover else ""),
                relayed=sql.SQL(", synchronous_commit = 'local'" if relayed else ""),
                name=name,
                conninfo=sql.Literal(conninfo),
                slot=sql.Literal(name),
                enabled=sql.Literal(enabled),
                create_slot=sql.Literal(create_slot),
            )
        )
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or pg.first_line(str(exc))
        raise OperationFailed(
            f"creating the subscription {name} failed: {reason}", code="subscription_failed"
        ) from None
    finally:
        conn.execute(pg.query("reset_statement_timeout", _SQL))


def heard_within(conn: pg.Connection, name: str, seconds: float) -> bool:
    """Whether the group's stream received anything from its upstream that recently: an
    upstream that refuses new connections may still be streaming."""
    row = conn.execute(pg.query("heard_within", _SQL), {"name": name, "seconds": seconds}).fetchone()
    return bool(row and row["heard"])


def is_relay(conn: pg.Connection) -> bool:
    row = conn.execute(pg.query("node_role", _SQL)).fetchone()
    return bool(row and row["role"] == "relay")


def flush_each_commit(conn: pg.Connection, names: list[str]) -> None:
    """A relay's streams (these groups' subscriptions, where they exist) flush at each commit,
    so that what they apply goes on downstream at once (see create_subscription)."""
    for name in names:
        if subscription(conn, name) is not None:
            conn.execute(pg.query("flush_each_commit", _SQL, name=name))


def resubscribe(conn: pg.Connection, name: str, leader_url: str, login: Login, leader_version: int) -> None:
    """The group's subscription made again on its slot, disabled, which keeps every change the
    slot holds: pg_upgrade from before 17 brings a subscription back without its tables (the
    apply worker would skip their changes, and confirm them)."""
    with conn.transaction():  # all or nothing: a subscription lost here would lose its slot next
        drop_subscription(conn, name, leader_reachable=False)
        create_subscription(
            conn, name, leader_url, login, enabled=False, leader_version=leader_version, create_slot=False
        )


def set_connection(conn: pg.Connection, name: str, leader_url: str, login: Login) -> None:
    """Point the group's subscription at this Leader URL and login, and rewrite its password
    file (after an enrollment, or when the file went missing)."""
    conninfo = _stream_conninfo(conn, name, leader_url, login)
    conn.execute(pg.query("set_connection", _SQL, name=name, conninfo=sql.Literal(conninfo)))


def set_enabled(conn: pg.Connection, name: str, enabled: bool) -> None:
    current = subscription(conn, name)
    if current is None or current["enabled"] == enabled:
        return
    if enabled and current["relations"] == 0:
        # Its worker would skip every change of the tables it lacks, and confirm them: the
        # next sync makes it again first (groups.ensure_stream).
        log.warning("subscription %s has no tables (pg_upgrade from before 17): not enabled", name)
        return
    conn.execute(pg.query("enable_subscription" if enabled else "disable_subscription", _SQL, name=name))


def workers(conn: pg.Connection, name: str) -> int:
    """Replication workers of this subscription that are running (apply, parallel apply)."""
    row = conn.execute(pg.query("subscription_workers", _SQL), {"name": name}).fetchone()
    return int(row["n"]) if row else 0


def pause(conn: pg.Connection, name: str, deadline: Deadline) -> None:
    """Disable the subscription and wait until its workers have exited: from then on nothing
    of the group is applied, and the stream will resume where it stopped. Workers still
    running after a short grace are stopped (a rolled-back apply is resumed from its origin)."""
    set_enabled(conn, name, False)
    grace = STOP_GRACE_S if pg.server_version(conn) >= WAKES_WORKERS_AT_DISABLE_SINCE else 0.0
    stopped = poll(lambda: True if workers(conn, name) == 0 else None, deadline.at_most(grace))
    if stopped is None and not deadline.expired():
        try:
            conn.execute(pg.query("stop_subscription_workers", _SQL), {"name": name})
        except psycopg.errors.InsufficientPrivilege:
            log.info("no right to stop the workers of %s: waiting for them to exit", name)
    if poll(lambda: True if workers(conn, name) == 0 else None, deadline) is None:
        raise DeadlineExceeded(
            f"the workers of subscription {name} did not stop within {deadline.seconds:g}s"
        )


def make_failover_ready(conn: pg.Connection, name: str, leader_version: int, deadline: Deadline) -> bool:
    """Turn a group's slot into a failover slot where both servers can (17+) and it is not
    one yet: a group made before this version, or before an upgrade of either server. The
    subscription must be disabled for that, so a streaming group pauses for a moment and
    resumes where it stopped. True when it changed something."""
    if min(pg.server_version(conn), leader_version) < FAILOVER_SLOTS_SINCE:
        return False
    row = conn.execute(pg.query("subscription_failover", _SQL), {"name": name}).fetchone()
    if row is None or row["failover"]:
        return False
    pause(conn, name, deadline)
    alter = pg.query("set_failover", _SQL, name=name)
    refusal: list[str] = []

    def altered() -> bool | None:
        try:
            conn.execute(alter)
            return True
        except psycopg.Error as exc:  # the walsender may hold the slot a moment longer
            refusal[:] = [exc.diag.message_primary or pg.first_line(str(exc))]
            return None

    try:
        if poll(altered, deadline) is None:
            raise OperationFailed(f"making the slot of {name} a failover slot failed: {refusal[-1]}")
    finally:
        if row["enabled"]:
            set_enabled(conn, name, True)
    log.info("subscription %s: its slot is now a failover slot", name)
    return True


def drop_subscription(conn: pg.Connection, name: str, leader_reachable: bool) -> bool:
    """Drop the subscription; True when its slot on the Leader went with it.

    Leader up: DROP also drops the slot there. Leader down (or refusing the slot drop): the
    subscription lets go of its slot first, and the caller must have the slot dropped later.
    """
    if subscription(conn, name) is None:
        return False
    drop = pg.query("drop_subscription", _SQL, name=name)
    if leader_reachable:
        try:
            conn.execute(drop)
            return True
        except psycopg.Error as exc:
            log.warning("dropping %s with its slot failed (%s): dropping it alone", name, exc)
    conn.execute(pg.query("disable_subscription", _SQL, name=name))
    conn.execute(pg.query("release_slot", _SQL, name=name))
    conn.execute(drop)
    return False


def heartbeat_seq(conn: pg.Connection, group_name: str) -> int | None:
    row = conn.execute(pg.query("heartbeat_seq", _SQL), {"name": group_name}).fetchone()
    return int(row["seq"]) if row else None


def wait_for_barrier(
    conn: pg.Connection, name: str, seq: int, deadline: Deadline, leader: LeaderClient | None = None
) -> None:
    """Until the group's apply worker has applied Leader heartbeat `seq`.

    The worker applies the Leader's changes in commit order: once it has applied the
    heartbeat, it has applied everything committed before it, in every list of the group.
    While waiting it checks, about once a second, that the Leader still answers (a Leader
    that died is reported at once, not at the deadline) and that the worker is not failing.
    """
    errors_before = error_count(conn, name)
    seen: int | None = None
    checked = time.monotonic()

    def reached() -> bool | None:
        nonlocal seen, checked
        seen = heartbeat_seq(conn, name)
        if seen is not None and seen >= seq:
            return True
        if time.monotonic() - checked >= HEALTH_CHECK_EVERY_S:
            checked = time.monotonic()
            if leader is not None:
                leader.alive()
            new_errors = error_count(conn, name) - errors_before
            if new_errors > MAX_NEW_ERRORS:
                raise OperationFailed(
                    f"the stream {name} keeps failing ({new_errors} apply errors while waiting): "
                    "see the Subscriber's server log"
                )
        return None

    if poll(reached, deadline) is None:
        message = (
            f"the stream {name} did not catch up with the Leader within {deadline.seconds:g}s "
            f"(heartbeat seen {seen if seen is not None else 'none'}, waiting for {seq})"
        )
        # Say why, when either server can tell (stall.py never raises).
        raise DeadlineExceeded(
            stall.timeout_message(message, stall.why_stalled(conn, name, errors_before, leader))
        )


# -- capacity --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    setting: str
    value: int
    needed: int


def stream_capacity(conn: pg.Connection, more: int = 1) -> list[Limit]:
    """The settings that cannot hold `more` streams beyond the subscriptions of this cluster.

    Each subscription needs an apply worker while it streams (a windowed one during its
    windows, possibly all at once), a background worker slot for it next to the launcher's,
    and a replication origin, which PostgreSQL 18 caps apart and older versions count
    against max_replication_slots.
    """
    row = conn.execute(pg.query("cluster_subscriptions", _SQL)).fetchone()
    subscriptions_now = int(row["n"]) if row else 0
    streams = subscriptions_now + more
    origin_setting = (
        "max_active_replication_origins" if pg.server_version(conn) >= 180000 else "max_replication_slots"
    )
    needs = {
        "max_logical_replication_workers": streams,
        "max_worker_processes": streams + 1,  # + the logical replication launcher
        origin_setting: streams,
    }
    return [
        Limit(setting, int(pg.setting(conn, setting)), needed)
        for setting, needed in needs.items()
        if int(pg.setting(conn, setting)) < needed
    ]


def refuse_without_capacity(conn: pg.Connection) -> None:
    """Refuse (exit 3) before creating a stream that this server could not start."""
    short = stream_capacity(conn)
    if short:
        fixes = "; ".join(f"ALTER SYSTEM SET {limit.setting} = {max(limit.needed, 10)}" for limit in short)
        found = ", ".join(f"{limit.setting} is {limit.value}" for limit in short)
        raise PreconditionFailed(
            f"this Subscriber cannot start one more replication stream ({found}); run {fixes}; "
            "then restart PostgreSQL",
            code="no_capacity",
        )


def copy_application_name(local_list_id: int) -> str:
    """How the connections that copy or repair a list here name themselves, so that a reader
    (status) finds their progress without asking the copier."""
    return f"pgsync-dossier copy list {local_list_id}"


def copies_in_progress(conn: pg.Connection, local_list_ids: list[int]) -> dict[int, int]:
    """The rows written so far by the copies of these lists that are running now."""
    if not local_list_ids:
        return {}
    by_name = {copy_application_name(local): local for local in local_list_ids}
    rows = conn.execute(pg.query("copy_progress", "subscriber.sql"), {"names": list(by_name)})
    return {by_name[row["application_name"]]: int(row["rows"]) for row in rows}


#: Rows of each table whose stored size is averaged: a list's rows are alike (one face model's
#: embeddings), so a thousand tell their size within a few percent, read in milliseconds.
SIZE_SAMPLE_ROWS = 1000


def lists_bytes(conn: pg.Connection, local_list_ids: list[int]) -> int:
    """About the bytes these lists' rows take here (both tables, their TOASTed values included,
    their indexes not: backlog.REPAIR_ABOVE is measured against this)."""
    params = {"lists": local_list_ids, "sample": SIZE_SAMPLE_ROWS}
    row = conn.execute(pg.query("lists_bytes", _SQL), params).fetchone()
    return int(row["bytes"]) if row else 0


def analyze_tables(conn: pg.Connection) -> None:
    """Fresh planner statistics after a copy wrote a list (subscriber.sql says why)."""
    conn.execute(pg.query("analyze_tables", _SQL))

"""Why a group's stream did not reach its barrier, when PostgreSQL can tell.

A barrier that times out knows only the heartbeats (the last one applied, the one awaited).
The two servers often know why: on the Subscriber, a subscription that is disabled, has no
apply worker, keeps failing, or whose worker waits for a lock; on the Leader, a walsender that
waits for a standby that synchronized_standby_slots names (a promoted standby inherits the
setting and then names a slot it does not have). The timeout error says it, on one line.

The diagnosis only reads, and never costs the caller its error: whatever goes wrong here is
logged, and the timeout is reported as it would have been without it.
"""

from __future__ import annotations

import logging
from typing import TypedDict

from psycopg.rows import kwargs_row

from pgsync_dossier import pg, standby
from pgsync_dossier.leader_client import LeaderClient, StreamStall

log = logging.getLogger(__name__)


class SubscriptionStall(TypedDict):
    """The query subscription_stall's row: the subscription, its apply worker and what that waits for."""

    enabled: bool
    worker_pid: int | None
    wait_event_type: str | None
    wait_event: str | None
    blocked_by: list[str] | None  # "pid (state)" of each session holding the lock it waits for
    errors: int


def why_stalled(
    conn: pg.Connection, name: str, errors_before: int, leader: LeaderClient | None = None
) -> list[str]:
    """The reasons PostgreSQL gives for the stream `name` not advancing, most direct first
    ([] when neither side can tell)."""
    reasons: list[str] = []
    try:
        # A savepoint (or a transaction of its own): a failed read leaves the caller's intact.
        with conn.transaction(), conn.cursor(row_factory=kwargs_row(SubscriptionStall)) as cur:
            row = cur.execute(pg.query("subscription_stall", "subscriber.sql"), {"name": name}).fetchone()
        reasons += subscriber_reasons(name, row, errors_before)
    except Exception as exc:  # the diagnosis must never replace the timeout
        log.warning("stream %s: could not read why it waits on this Subscriber: %s", name, exc)
    if leader is not None:
        try:
            reasons += leader_reasons(leader.stream_stall(name))
        except Exception as exc:  # as above
            log.warning("stream %s: could not ask the Leader why it waits: %s", name, exc)
    return reasons


def subscriber_reasons(name: str, row: SubscriptionStall | None, errors_before: int) -> list[str]:
    """From the query subscription_stall: the Subscriber's side of a stalled stream."""
    if row is None:
        return [f"its subscription {name} is gone (the next sync or tick makes it again)"]
    if not row["enabled"]:
        return [
            f"its subscription {name} is disabled (an operator, or an apply error with "
            "disable_on_error); the next sync enables it"
        ]
    reasons = []
    failed = int(row["errors"]) - errors_before
    if row["worker_pid"] is None:
        reasons.append(
            "no apply worker runs for it (all max_logical_replication_workers busy, or it keeps "
            "failing: see the Subscriber's server log)"
        )
    elif row["wait_event_type"] == "Lock":
        holders = ", ".join(row["blocked_by"] or []) or "another session"
        reasons.append(
            f"its apply worker (pid {row['worker_pid']}) waits for a lock ({row['wait_event']}) held by "
            f"pid {holders} on the Subscriber: end that transaction"
        )
    if failed > 0:
        reasons.append(
            f"its apply worker failed {failed} times while waiting: see the Subscriber's server log"
        )
    return reasons


def leader_reasons(row: StreamStall) -> list[str]:
    """From pgsync.api_stream_stall: the Leader's side of a stalled stream."""
    named = row["standby_slots"] or []
    blockers = standby.slot_blockers(named)
    waits = row["wait_event"] == standby.WAITS_FOR_STANDBY
    subject = (
        "the Leader's walsender waits for" if waits else "every failover-slot stream of the Leader waits for"
    )
    reasons = [
        f"{subject} the standby slot '{blocker.slot}' named in its synchronized_standby_slots, "
        f"{blocker.what}; there, {blocker.fix}"
        for blocker in blockers
    ]
    if waits and not blockers:
        slots = ", ".join(f"'{slot['slot_name']}'" for slot in named) or "(none named)"
        reasons.append(
            f"the Leader's walsender waits for a standby that synchronized_standby_slots names "
            f"({slots}) to confirm the WAL it sends: see that standby's lag in pg_stat_replication "
            "on the Leader"
        )
    return reasons


def timeout_message(message: str, reasons: list[str]) -> str:
    """The timeout error with its reasons, on one line (unchanged when there are none)."""
    return f"{message}: {'; '.join(reasons)}" if reasons else message

"""Which links are due, one scheduler step (`tick`), and the long-running loop (`run`).

Missed occurrences are coalesced: a link is due when at least one occurrence has passed
since its last successful sync (or its creation), and one sync then covers all of them. A
failed sync does not move that mark, so the next tick retries it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgsync_dossier import pg, subscriber
from pgsync_dossier.config import Config
from pgsync_dossier.errors import OperationFailed, PgsyncError, PreconditionFailed, ServerUnreachable
from pgsync_dossier.leader import LeaderClient
from pgsync_dossier.links import cleanup_orphan_slots
from pgsync_dossier.node import require_role
from pgsync_dossier.schedule import Schedule
from pgsync_dossier.sync import (
    Reason,
    SyncOutcome,
    effective_schedule_text,
    set_leader_available,
    set_state,
    sync_link,
)

log = logging.getLogger(__name__)

DEFAULT_TICK_TIMEOUT_S = 300.0
#: The daemon wakes at least this often, to notice new links and probe the Leaders.
MAX_SLEEP_S = 60.0
#: Sync history kept per link.
HISTORY_DAYS = 30

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Schedule:
    return Schedule.parse(text)


def link_schedule(link: dict[str, Any]) -> Schedule | None:
    text = effective_schedule_text(link, link.get("leader_schedule"))
    if text is None:
        return None
    try:
        return _parse(text)
    except ValueError:
        log.warning("list %s: ignoring an unusable schedule %r", link["local_list_id"], text)
        return None


def last_synced_mark(conn: pg.Connection, link: dict[str, Any]) -> datetime:
    """Since when occurrences count: the window (or start) of the last successful sync, else
    the link's creation."""
    row = conn.execute(
        "SELECT max(coalesce(window_at, started_at)) AS at FROM pgsync.sync_run WHERE link_id = %s AND ok",
        [link["id"]],
    ).fetchone()
    at = row["at"] if row else None
    created: datetime = link["created_at"]
    return max(at, created) if at else created


def due_occurrence(conn: pg.Connection, link: dict[str, Any], now: datetime) -> datetime | None:
    schedule = link_schedule(link)
    if schedule is None:
        return None
    return schedule.due(last_synced_mark(conn, link), now)


def _links(conn: pg.Connection) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM pgsync.link WHERE state <> 'detaching' ORDER BY local_list_id"
    ).fetchall()


def sync_lists(
    config: Config, local_list_ids: list[int] | None, reason: Reason, timeout_s: float
) -> list[SyncOutcome]:
    """`sync`: every requested link now (all of them when None)."""
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        require_role(conn, "subscriber", "sync")
        cleanup_orphan_slots(conn, config)
        links = _links(conn)
        if local_list_ids is not None:
            known = {link["local_list_id"] for link in links}
            missing = [str(list_id) for list_id in local_list_ids if list_id not in known]
            if missing:
                raise PreconditionFailed(
                    f"not a replica on this Subscriber: list {', '.join(missing)}", code="not_a_replica"
                )
            links = [link for link in links if link["local_list_id"] in local_list_ids]
        return [sync_link(conn, config, link, reason, timeout_s) for link in links]


def tick(
    config: Config,
    *,
    startup: bool = False,
    timeout_s: float = DEFAULT_TICK_TIMEOUT_S,
    clock: Clock = utc_now,
) -> list[SyncOutcome]:
    """One scheduler step: sync what is due, probe the rest, prune old history."""
    outcomes = []
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        require_role(conn, "subscriber", "tick")
        cleanup_orphan_slots(conn, config)
        for link in _links(conn):
            # One link's trouble must not stop the others; the failure is reported with it.
            try:
                outcome = _step(conn, config, link, startup, timeout_s, clock())
            except (PgsyncError, psycopg.Error) as exc:
                log.warning("list %s: %s", link["local_list_id"], exc)
                reason = "startup" if startup else "schedule"
                code = exc.code if isinstance(exc, PgsyncError) else "unreachable"
                outcome = SyncOutcome(
                    link["local_list_id"], reason, "failed", error=str(exc).splitlines()[0], code=code
                )
            if outcome is not None:
                outcomes.append(outcome)
        # Old history goes, but never a link's last successful sync: it marks the served window.
        conn.execute(
            """
            DELETE FROM pgsync.sync_run WHERE finished_at < now() - make_interval(days => %s)
               AND id NOT IN (SELECT max(id) FROM pgsync.sync_run WHERE ok GROUP BY link_id)
            """,
            [HISTORY_DAYS],
        )
    return outcomes


def _step(
    conn: pg.Connection, config: Config, link: dict[str, Any], startup: bool, timeout_s: float, now: datetime
) -> SyncOutcome | None:
    if startup:
        return sync_link(conn, config, link, "startup", timeout_s)
    occurrence = due_occurrence(conn, link, now)
    if occurrence is not None:
        return sync_link(conn, config, link, "schedule", timeout_s, window_at=occurrence)
    if not pg.try_advisory_lock(conn, "link", link["id"]):
        return None  # a sync in another process owns the link (and its window) right now
    try:
        _probe(conn, config, link)
    finally:
        pg.advisory_unlock(conn, "link", link["id"])
    return None


def _probe(conn: pg.Connection, config: Config, link: dict[str, Any]) -> None:
    """Between syncs: record whether the Leader is reachable and keep the window state right.

    A windowed link must be disabled here (a crash may have left a window open) unless its
    initial copy is unfinished; a continuous one must be enabled unless paused, and a pause
    ends when the models match again. The caller holds the link's lock.
    """
    name, local = link["subscription_name"], link["local_list_id"]
    if subscriber.subscription(conn, name) is None:
        return
    try:
        with LeaderClient(link["leader_url"], config.sync_token) as leader:
            facts = leader.facts()
    except ServerUnreachable:
        set_leader_available(conn, local, False)
        facts = None
    except PgsyncError as exc:
        log.warning("list %s: %s", local, exc)
        facts = None
    if facts is not None:
        set_leader_available(conn, local, True)
        conn.execute(
            "UPDATE pgsync.link SET leader_schedule = %s WHERE id = %s", [facts.sync_schedule, link["id"]]
        )
        link = {**link, "leader_schedule": facts.sync_schedule}
    windowed = effective_schedule_text(link, link["leader_schedule"]) is not None
    models_match = facts is None or facts.face_model == config.face_model
    if facts is not None and not models_match and link["state"] != "paused":
        set_state(
            conn,
            local,
            "paused",
            f"paused: the Leader uses face model {facts.face_model!r}, this Subscriber "
            f"{config.face_model!r}; align the models, then sync again",
        )
    elif facts is not None and models_match and link["state"] == "paused":
        set_state(conn, local, "ready")
    paused = link["state"] == "paused" if facts is None else not models_match
    streaming = not windowed or not subscriber.copy_complete(conn, name)
    subscriber.set_enabled(conn, name, streaming and not paused)


def next_wake(config: Config, clock: Clock = utc_now) -> datetime:
    """When the daemon should look again: the next occurrence of any link, at most a minute away."""
    now = clock()
    wake = now + timedelta(seconds=MAX_SLEEP_S)
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        for link in _links(conn):
            schedule = link_schedule(link)
            occurrence = schedule.next_after(now) if schedule else None
            if occurrence is not None and occurrence < wake:
                wake = occurrence
    return wake


def run_forever(
    config: Config,
    stop: threading.Event,
    report: Callable[[list[SyncOutcome]], None],
    clock: Clock = utc_now,
    timeout_s: float = DEFAULT_TICK_TIMEOUT_S,
) -> None:
    """The daemon: a start-up sync, then ticks at each occurrence until `stop` is set.

    A stop request is honoured between syncs: a window in progress finishes (and is closed)
    first, because sync_link always disables a windowed subscription on its way out.
    """
    first = True
    while not stop.is_set():
        try:
            report(tick(config, startup=first, timeout_s=timeout_s, clock=clock))
            first = False
            wake = next_wake(config, clock)
        except (ServerUnreachable, OperationFailed, psycopg.OperationalError) as exc:
            # Passing trouble (a server restarting, a connection lost): keep the service up.
            log.warning("%s; retrying in %.0fs", str(exc).splitlines()[0], MAX_SLEEP_S)
            wake = clock() + timedelta(seconds=MAX_SLEEP_S)
        delay = max(0.0, (wake - clock()).total_seconds())
        stop.wait(min(delay + 0.05, MAX_SLEEP_S))

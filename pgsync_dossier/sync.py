"""One sync of one link: the heartbeat barrier, inside a window when the link is windowed.

A sync returns once everything the Leader committed before it started is visible here. In
windowed mode the subscription is enabled only for the sync and is disabled again whatever
happens, so a failed or interrupted window never stays open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from pgsync_dossier import pg, subscriber
from pgsync_dossier.config import Config
from pgsync_dossier.errors import OperationFailed, PgsyncError, ServerUnreachable
from pgsync_dossier.leader import LeaderClient

log = logging.getLogger(__name__)

Reason = Literal["schedule", "startup", "creation", "manual"]
Status = Literal["synced", "failed", "paused", "busy", "skipped"]
CopyProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class SyncOutcome:
    local_list: int
    reason: str
    status: Status
    barrier_seq: int | None = None
    error: str | None = None
    #: the error's machine-readable code (e.g. "unreachable"), None when synced
    code: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_schedule_text(link: dict[str, Any], leader_schedule: str | None) -> str | None:
    """A link's own schedule overrides the Leader's; neither means continuous."""
    return link["schedule"] or leader_schedule


def sync_link(
    conn: pg.Connection,
    config: Config,
    link: dict[str, Any],
    reason: Reason,
    timeout_s: float,
    on_progress: CopyProgress | None = None,
    window_at: datetime | None = None,
) -> SyncOutcome:
    """Sync one link unless another process is already syncing it.

    `window_at` is the schedule occurrence this sync serves (scheduled syncs only).
    """
    if not pg.try_advisory_lock(conn, "link", link["id"]):
        return SyncOutcome(
            link["local_list_id"], reason, "busy", error="another sync of this list is running", code="busy"
        )
    try:
        return _locked_sync(conn, config, link, reason, timeout_s, on_progress, window_at)
    finally:
        pg.advisory_unlock(conn, "link", link["id"])


def _locked_sync(
    conn: pg.Connection,
    config: Config,
    link: dict[str, Any],
    reason: Reason,
    timeout_s: float,
    on_progress: CopyProgress | None,
    window_at: datetime | None,
) -> SyncOutcome:
    local, name = link["local_list_id"], link["subscription_name"]
    run = conn.execute(
        "INSERT INTO pgsync.sync_run (link_id, reason, window_at) VALUES (%s, %s, %s) "
        "RETURNING id, started_at",
        [link["id"], reason, window_at],
    ).fetchone()
    assert run is not None
    windowed = effective_schedule_text(link, link["leader_schedule"]) is not None
    seq: int | None = None
    leader: LeaderClient | None = None
    try:
        if subscriber.subscription(conn, name) is None:
            raise OperationFailed(
                f"the subscription {name} is missing: detach list {local} and attach it again"
            )
        leader = LeaderClient(link["leader_url"], config.sync_token)
        set_leader_available(conn, local, True)
        facts = leader.facts()
        conn.execute(
            "UPDATE pgsync.link SET leader_schedule = %s, leader_node_name = %s WHERE id = %s",
            [facts.sync_schedule, facts.node_name, link["id"]],
        )
        windowed = effective_schedule_text(link, facts.sync_schedule) is not None
        if reason == "startup" and not facts.sync_at_startup:
            conn.execute("DELETE FROM pgsync.sync_run WHERE id = %s", [run["id"]])
            return SyncOutcome(
                local, reason, "skipped", error="the Leader's sync_at_startup is off", code="skipped"
            )
        if facts.face_model != config.face_model:
            message = (
                f"paused: the Leader ({facts.node_name}) now uses face model {facts.face_model!r}, "
                f"this Subscriber {config.face_model!r}; align the models, then sync again"
            )
            subscriber.set_enabled(conn, name, False)
            set_state(conn, local, "paused", message)
            return _finish(conn, run, local, reason, "paused", error=message)
        seq = leader.heartbeat(link["remote_list_id"])
        subscriber.set_enabled(conn, name, True)
        subscriber.wait_for_barrier(conn, name, local, seq, timeout_s, on_progress)
    except PgsyncError as exc:
        if isinstance(exc, ServerUnreachable):
            set_leader_available(conn, local, False)
        conn.execute(
            "UPDATE pgsync.link SET last_error = %s, updated_at = now() WHERE id = %s", [str(exc), link["id"]]
        )
        return _finish(conn, run, local, reason, "failed", seq, str(exc), exc.code)
    finally:
        if windowed and subscriber.subscription(conn, name) is not None:
            # Close the window, unless the initial copy is unfinished (it would restart).
            subscriber.set_enabled(conn, name, not subscriber.copy_complete(conn, name))
        if leader is not None:
            leader.close()
    set_state(conn, local, "ready")
    return _finish(conn, run, local, reason, "synced", seq)


def _finish(
    conn: pg.Connection,
    run: dict[str, Any],
    local: int,
    reason: str,
    status: Status,
    seq: int | None = None,
    error: str | None = None,
    code: str | None = None,
) -> SyncOutcome:
    row = conn.execute(
        "UPDATE pgsync.sync_run SET finished_at = now(), ok = %s, barrier_seq = %s, error = %s "
        "WHERE id = %s RETURNING finished_at",
        [status == "synced", seq, error, run["id"]],
    ).fetchone()
    assert row is not None
    if status != "synced" and code is None:
        code = status
    return SyncOutcome(local, reason, status, seq, error, code, run["started_at"], row["finished_at"])


def set_state(conn: pg.Connection, local_list_id: int, state: str, error: str | None = None) -> None:
    conn.execute(
        "UPDATE pgsync.link SET state = %s, last_error = %s, updated_at = now() WHERE local_list_id = %s",
        [state, error, local_list_id],
    )


def set_leader_available(conn: pg.Connection, local_list_id: int | None, available: bool) -> int:
    """Record the Leader of one link (or of every link) as reachable or not.

    This row is the authority the guard trigger reads to allow local deletes.
    """
    return conn.execute(
        """
        UPDATE pgsync.link SET leader_available = %(available)s,
               leader_unavailable_since = CASE WHEN %(available)s THEN NULL
                                               ELSE coalesce(leader_unavailable_since, now()) END,
               updated_at = now()
         WHERE (%(list)s::int IS NULL OR local_list_id = %(list)s)
           AND leader_available IS DISTINCT FROM %(available)s
        """,
        {"available": available, "list": local_list_id},
    ).rowcount

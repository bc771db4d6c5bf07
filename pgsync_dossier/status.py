"""status: what every link is doing, from this node's side and, where reachable, the Leader's.

Reading status also probes each Leader and records whether it is reachable, which is what
allows (or forbids again) local deletes in replica lists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgsync_dossier import leader as leader_module
from pgsync_dossier import links, pg, subscriber
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable
from pgsync_dossier.leader import LeaderClient
from pgsync_dossier.node import read_node
from pgsync_dossier.scheduler import link_schedule
from pgsync_dossier.sync import set_leader_available

#: The keys of `status --json` on a Subscriber, in order (documented in the README).
SUBSCRIBER_FIELDS = (
    "local_list",
    "local_list_name",
    "remote_list",
    "leader",
    "leader_url",
    "state",
    "enabled",
    "leader_available",
    "dossiers",
    "faces",
    "leader_dossiers",
    "leader_faces",
    "lag_bytes",
    "lag_seconds",
    "retained_wal_bytes",
    "wal_status",
    "copy",
    "apply_errors",
    "apply_conflicts",
    "schedule",
    "last_sync",
    "last_sync_ok",
    "next_sync",
    "last_error",
)


def status(config: Config, local_list_id: int | None = None) -> list[dict[str, Any]]:
    with pg.connect(config.database_url, what="this node's database") as conn:
        node = read_node(conn)
        if node["role"] == "leader":
            return leader_status(conn)
        links.cleanup_orphan_slots(conn, config)
        rows = conn.execute(pg.query("subscriber_links")).fetchall()
        if local_list_id is not None:
            rows = [row for row in rows if row["local_list_id"] == local_list_id]
            if not rows:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        result = [_link_status(conn, config, row) for row in rows]
        result.extend(_orphans(conn))
        return result


def _link_status(conn: pg.Connection, config: Config, row: dict[str, Any]) -> dict[str, Any]:
    last = conn.execute(
        "SELECT finished_at, ok, error FROM pgsync.sync_run WHERE link_id = %s AND finished_at IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT 1",
        [row["id"]],
    ).fetchone()
    states = subscriber.table_states(conn, row["subscription_name"])
    schedule = link_schedule(row)
    apply_errors, apply_conflicts = subscriber.apply_problems(conn, row["subscription_name"])
    ready = sum(1 for state in states.values() if state in ("r", "s"))
    item: dict[str, Any] = {
        "local_list": row["local_list_id"],
        "local_list_name": row["local_list_name"],
        "remote_list": row["remote_list_id"],
        "leader": row["leader_node_name"],
        "leader_url": mask_conninfo(row["leader_url"]),
        "state": row["state"] if row["subscription_exists"] or row["state"] == "detaching" else "error",
        "enabled": bool(row["enabled"]),
        "leader_available": row["leader_available"],
        "dossiers": row["dossiers"],
        "faces": row["faces"],
        "leader_dossiers": None,
        "leader_faces": None,
        "lag_bytes": None,
        "lag_seconds": None,
        "retained_wal_bytes": None,
        "wal_status": None,
        "copy": f"{ready}/{len(states)} tables" if states else "-",
        "apply_errors": apply_errors,
        "apply_conflicts": apply_conflicts,
        "schedule": schedule.text if schedule else None,
        "last_sync": last["finished_at"] if last else None,
        "last_sync_ok": last["ok"] if last else None,
        "next_sync": schedule.next_after(datetime.now(UTC)) if schedule else None,
        "last_error": row["last_error"] or (last["error"] if last and not last["ok"] else None),
    }
    try:
        with LeaderClient(row["leader_url"], config.sync_token) as leader:
            info = leader.list_info(row["remote_list_id"]) or {}
            slot = leader.slot_status(row["subscription_name"])
            beat = leader.list_heartbeat(row["remote_list_id"])
    except ServerUnreachable as exc:
        set_leader_available(conn, row["local_list_id"], False)
        item["leader_available"] = False
        item["last_error"] = item["last_error"] or str(exc)
        return item
    except PgsyncError as exc:
        item["last_error"] = item["last_error"] or str(exc)
        return item
    set_leader_available(conn, row["local_list_id"], True)
    item["leader_available"] = True
    item["leader_dossiers"] = info.get("dossiers")
    item["leader_faces"] = info.get("faces")
    if slot["slot_exists"]:
        item["lag_bytes"] = slot["lag_bytes"]
        item["retained_wal_bytes"] = slot["retained_bytes"]
        item["wal_status"] = slot["wal_status"]
    else:
        item["wal_status"] = "missing"
        item["last_error"] = (
            item["last_error"] or "the Leader has no slot for this link: detach and attach again"
        )
    item["lag_seconds"] = _lag_seconds(beat, row["heartbeat_seq"], row["heartbeat_at"])
    return item


def _lag_seconds(beat: dict[str, Any] | None, seen_seq: int | None, seen_at: datetime | None) -> float | None:
    """How old the newest Leader state this replica has seen is, when it is behind; else 0."""
    if beat is None or seen_seq is None or seen_at is None:
        return None
    if seen_seq >= beat["seq"]:
        return 0.0
    behind: float = (beat["leader_now"] - seen_at).total_seconds()
    return round(behind, 3)


def _orphans(conn: pg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM pgsync.orphan_slot ORDER BY detached_at").fetchall()
    return [
        {
            **{key: None for key in SUBSCRIBER_FIELDS},
            "leader_url": mask_conninfo(row["leader_url"]),
            "state": "orphan-slot",
            "enabled": False,
            "last_error": f"slot {row['slot_name']} is still on the Leader (detached while it was down); "
            "it is dropped by the next status, attach, detach, sync or tick that reaches the Leader",
        }
        for row in rows
    ]


def leader_status(conn: pg.Connection) -> list[dict[str, Any]]:
    """On the Leader: each published list, and each registered Subscriber link under it."""
    published = leader_module.published_lists(conn)
    registered = leader_module.subscriber_links(conn)
    result = []
    for pub in published:
        subs = [s for s in registered if s["list_id"] == pub["list_id"]]
        result.append(
            {
                "list": pub["list_id"],
                "list_name": pub["list_name"],
                "publication": pub["publication_name"],
                "dossiers": pub["dossiers"],
                "faces": pub["faces"],
                "subscribers": [
                    {
                        "subscriber": s["subscriber_node"],
                        "subscriber_list": s["subscriber_list_id"],
                        "slot": s["slot_name"],
                        "slot_exists": s["slot_exists"],
                        "active": s["active"],
                        "wal_status": s["wal_status"],
                        "lag_bytes": s["lag_bytes"],
                        "retained_wal_bytes": s["retained_bytes"],
                    }
                    for s in subs
                ],
            }
        )
    return result

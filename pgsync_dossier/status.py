"""status: what every replica list is doing, from this node's side and, where reachable, the
Leader's. It only reads: reachability and clean-ups are recorded by sync and tick.

One connection per Leader serves every list of that Leader (two calls in all), and this
node's side is read in a handful of set-based queries, whatever the number of lists.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pgsync_dossier import catalog, copier, pg, subscriber
from pgsync_dossier import leader as leader_module
from pgsync_dossier import node as node_module
from pgsync_dossier.catalog import Group, Link
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.enrollment import Logins
from pgsync_dossier.errors import PgsyncError, PreconditionFailed
from pgsync_dossier.groups import stream_facts
from pgsync_dossier.leader import LeaderPool
from pgsync_dossier.node import read_node
from pgsync_dossier.scheduler import group_schedule
from pgsync_dossier.window import lag_seconds, stream_note

#: The keys of `status --json` on a Subscriber, in order (documented in docs/cli.md).
SUBSCRIBER_FIELDS = (
    "local_list",
    "local_list_name",
    "remote_list",
    "leader",
    "leader_url",
    "leader_host",
    "group",
    "state",
    "stream",
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
    "last_heal",
    "verified",
    "verified_at",
    "verified_differences",
    "verify_schedule",
    "warning",
    "last_error",
)
#: Share of the allowed WAL a closed window's slot may hold before status warns.
RETENTION_WARNING = 0.8


def status(config: Config, local_list_id: int | None = None) -> list[dict[str, Any]]:
    with pg.connect(config.database_url, what="this node's database") as conn:
        node = read_node(conn)
        if node["role"] == "leader":
            return leader_status(conn)
        links = catalog.links(conn)
        if local_list_id is not None:
            links = [link for link in links if link.local_list_id == local_list_id]
            if not links:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        by_id = {group.id: group for group in catalog.groups(conn)}
        shown = {link.group_id: by_id[link.group_id] for link in links}
        this = catalog.node(conn)
        assert this is not None
        # Both sides count their lists' rows: the Leader's calls run while this database's
        # are read (the connection serializes the few queries the login lookup makes here).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgsync-status") as pool:
            leader_side = pool.submit(
                _leader_views, Logins(conn, this, config, may_enroll=False), links, shown
            )
            local = _LocalView(conn, links)
            remote = leader_side.result()
        states = {link.local_list_id: link.state for link in links}
        result = [
            _row(
                link, shown[link.group_id], local, remote.get(shown[link.group_id].leader_url), states, config
            )
            for link in links
        ]
        result.extend(_orphans(conn))
        return result


class _LocalView:
    """This node's side of every shown link, read once."""

    def __init__(self, conn: pg.Connection, links: list[Link]) -> None:
        self.counts = catalog.list_counts(conn, [link.local_list_id for link in links])
        self.subscriptions = subscriber.subscriptions(conn)
        self.last_runs = catalog.last_runs(conn)
        self.last_heals = catalog.last_heals(conn)
        self.verifications = catalog.last_verifications(conn)
        self.heartbeats = {row["group_name"]: row for row in conn.execute(pg.query("heartbeats"))}
        copying = [copier.application_name(link.local_list_id) for link in links if link.needs_copy]
        self.copied = (
            {
                row["application_name"]: int(row["rows"])
                for row in conn.execute(pg.query("copy_progress"), {"names": copying})
            }
            if copying
            else {}
        )


class _LeaderView:
    """The Leader's side of the shown links of one Leader: two calls on one connection."""

    def __init__(self) -> None:
        self.lists: dict[int, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.host: str | None = None  # host:port that answered (the primary of a multi-host URL)
        self.error: str | None = None


def _leader_views(logins: Logins, links: list[Link], shown: dict[int, Group]) -> dict[str, _LeaderView]:
    views: dict[str, _LeaderView] = {}
    with LeaderPool(logins) as leaders:
        for url in {group.leader_url for group in shown.values()}:
            view = views[url] = _LeaderView()
            mine = [group for group in shown.values() if group.leader_url == url]
            remote_lists = [link.remote_list_id for link in links if shown[link.group_id] in mine]
            try:
                client = leaders.get(url)
                view.host = client.host
                view.lists = client.lists_info(remote_lists)
                view.groups = client.groups_status([group.name for group in mine])
            except PgsyncError as exc:
                view.error = str(exc)
    return views


def _row(
    link: Link,
    group: Group,
    local: _LocalView,
    remote: _LeaderView | None,
    states: dict[int, str],
    config: Config,
) -> dict[str, Any]:
    counts = local.counts.get(link.local_list_id, {})
    sub = local.subscriptions.get(group.name)
    last = local.last_runs.get(group.id)
    schedule = group_schedule(group)
    now = datetime.now(UTC)
    windowed = schedule is not None
    enabled = bool(sub and sub["enabled"])
    heal = local.last_heals.get(group.id)
    proof = local.verifications.get(link.local_list_id)
    pausing_for = "repairing" if states.get(group.copying_list_id or -1) == "repairing" else "copying"
    facts = stream_facts(
        group, window_open=enabled and windowed, models_match=link.state != "paused", pausing_for=pausing_for
    )
    item: dict[str, Any] = {
        "local_list": link.local_list_id,
        "local_list_name": counts.get("name"),
        "remote_list": link.remote_list_id,
        "leader": group.leader_node_name,
        "leader_url": mask_conninfo(group.leader_url),
        "leader_host": remote.host if remote else None,
        "group": group.name,
        "state": link.state if sub is not None or link.needs_copy or link.state == "detaching" else "error",
        "stream": stream_note(facts, now) if sub is not None else "no subscription",
        "enabled": enabled,
        "leader_available": group.leader_available,
        "dossiers": counts.get("dossiers"),
        "faces": counts.get("faces"),
        "leader_dossiers": None,
        "leader_faces": None,
        "lag_bytes": None,
        "lag_seconds": None,
        "retained_wal_bytes": None,
        "wal_status": None,
        "copy": _copy_progress(link, local),
        "apply_errors": sub["errors"] if sub else None,
        "apply_conflicts": sub["conflicts"] if sub else None,
        "schedule": schedule.text if schedule else None,
        "last_sync": last["finished_at"] if last else None,
        "last_sync_ok": last["ok"] if last else None,
        "next_sync": schedule.next_after(now) if schedule else None,
        "last_heal": f"{heal['finished_at'].isoformat(timespec='seconds')}: {heal['note']}" if heal else None,
        # equal, differs, or never: the latest verification that compared (verify.py)
        "verified": ("equal" if proof["equal"] else "differs") if proof else "never",
        "verified_at": proof["finished_at"] if proof else None,
        "verified_differences": proof["differences"] if proof else None,
        "verify_schedule": config.verify_schedule.text if config.verify_schedule else None,
        "warning": None,
        "last_error": link.last_error
        or group.last_error
        or (last["error"] if last and not last["ok"] else None),
    }
    if remote is None or remote.error is not None:
        item["last_error"] = item["last_error"] or (remote.error if remote else None)
        return item
    info = remote.lists.get(link.remote_list_id)
    item["leader_dossiers"] = info["dossiers"] if info else None
    item["leader_faces"] = info["faces"] if info else None
    slot = remote.groups.get(group.name) or {}
    if slot.get("slot_exists"):
        item["lag_bytes"] = slot["lag_bytes"]
        item["retained_wal_bytes"] = slot["retained_bytes"]
        item["wal_status"] = slot["wal_status"]
        item["warning"] = _retention_warning(
            slot, closed=windowed and not enabled, budget=config.wal_retention_budget
        )
    else:
        item["wal_status"] = "missing"
        item["last_error"] = (
            item["last_error"] or "the Leader has no slot for this group: run pgsync-dossier sync"
        )
    beat = local.heartbeats.get(group.name)
    item["lag_seconds"] = lag_seconds(slot, beat)
    return item


def _retention_warning(slot: dict[str, Any], *, closed: bool, budget: int | None) -> str | None:
    """Warn before the Leader loses a closed window's slot: past 80% of its
    max_slot_wal_keep_size (or of wal_retention_budget when the Leader sets no limit)."""
    if slot["wal_status"] in ("unreserved", "lost"):
        return (
            f"the Leader is about to drop the WAL this group's slot needs (wal_status {slot['wal_status']})"
        )
    limit = slot["max_slot_wal_keep_size"] if slot["max_slot_wal_keep_size"] > 0 else budget
    retained = slot["retained_bytes"] or 0
    if not closed or not limit or retained <= RETENTION_WARNING * limit:
        return None
    what = "max_slot_wal_keep_size" if slot["max_slot_wal_keep_size"] > 0 else "wal_retention_budget"
    return (
        f"the closed window's slot holds {retained / 2**20:.0f} MB of WAL, {100 * retained / limit:.0f}% "
        f"of the Leader's {what} ({limit / 2**20:.0f} MB): sync before it is lost "
        "(it would then be healed by a repair)"
    )


def _copy_progress(link: Link, local: _LocalView) -> str:
    if not link.needs_copy:
        return "done"
    copied = local.copied.get(copier.application_name(link.local_list_id))
    if copied is None:
        return "pending"
    return f"{copied}/{link.copy_expected if link.copy_expected is not None else '?'} rows"


def _orphans(conn: pg.Connection) -> list[dict[str, Any]]:
    return [
        {
            **{key: None for key in SUBSCRIBER_FIELDS},
            "leader_url": mask_conninfo(row["leader_url"]),
            "group": row["slot_name"],
            "state": "orphan-slot",
            "enabled": False,
            "last_error": f"slot {row['slot_name']} is still on the Leader (dropped while it was down); "
            "the next attach, detach, sync or tick that reaches the Leader drops it",
        }
        for row in catalog.orphans(conn)
    ]


def leader_warnings(config: Config) -> list[str]:
    """On the Leader: node.leader_warnings, on a connection of its own."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        return node_module.leader_warnings(conn)


def leader_status(conn: pg.Connection) -> list[dict[str, Any]]:
    """On the Leader: each published list, and each Subscriber group that streams it."""
    registered = leader_module.registered_groups(conn)
    list_ids = sorted({list_id for group in registered for list_id in group["lists"]})
    info = leader_module.lists_info(conn, list_ids)
    return [
        {
            "list": list_id,
            "list_name": info[list_id]["name"] if list_id in info else None,
            "dossiers": info[list_id]["dossiers"] if list_id in info else None,
            "faces": info[list_id]["faces"] if list_id in info else None,
            "subscribers": [
                {
                    "subscriber": group["subscriber_node"],
                    "group": group["name"],
                    "slot_exists": group["slot_exists"],
                    "active": group["active"],
                    "wal_status": group["wal_status"],
                    "lag_bytes": group["lag_bytes"],
                    "retained_wal_bytes": group["retained_bytes"],
                    "last_confirmed": group["last_confirmed"],
                }
                for group in registered
                if list_id in group["lists"]
            ],
        }
        for list_id in list_ids
    ]

"""status: what every replica list is doing, from this node's side and, where reachable, the
Leader's. It only reads: reachability and clean-ups are recorded by sync and tick.

One connection per Leader serves every list of that Leader (two calls in all), and this
node's side is read in a handful of set-based queries, whatever the number of lists.
"""

from __future__ import annotations

import builtins
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from pgsync_dossier import catalog, decode_load, exposure, leader_install, pg, standby, subscriber
from pgsync_dossier.catalog import Group, Link
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.enrollment import Logins
from pgsync_dossier.errors import PgsyncError, PreconditionFailed
from pgsync_dossier.group_window import group_schedule, stream_facts
from pgsync_dossier.leader_client import GroupSlot, LeaderPool
from pgsync_dossier.leader_install import ListInfo
from pgsync_dossier.window import stream_note

#: A value of a status row as JSON shows it (a datetime in ISO 8601).
Cell = int | float | str | bool | datetime | None


def _doc(text: str) -> dict[str, str]:
    """A field's description, as the API documents it (api/status_models.py)."""
    return {"description": text}


@dataclass(frozen=True)
class StatusRow:
    """One replica list on a Subscriber: a row of `status --json` (its keys, in this order,
    are documented in docs/cli.md), of the HTTP API's links and of /metrics."""

    local_list: int
    local_list_name: str | None
    remote_list: int
    leader: str | None
    leader_url: str
    leader_host: str | None = field(
        metadata=_doc("the host:port that answered for the Leader (with a multi-host URL: the primary now)")
    )
    group: str = field(metadata=_doc("the replication stream (group) this list belongs to"))
    state: str
    stream: str = field(metadata=_doc("what the group's stream does now, e.g. 'paused: copying list 7'"))
    enabled: bool
    leader_available: bool
    dossiers: int | None
    faces: int | None
    leader_dossiers: int | None
    leader_faces: int | None
    lag_bytes: int | None
    lag_seconds: float | None
    leader_time_reached: datetime | None = field(
        metadata=_doc(
            "the Leader's clock at the newest heartbeat applied here: the replica holds everything "
            "the Leader committed before it, through a relay too (null: no heartbeat yet)"
        )
    )
    retained_wal_bytes: int | None
    wal_status: str | None
    copy: str = field(
        metadata=_doc("the orchestrator's copy: 'done', 'pending' or rows copied, e.g. '1200/5000 rows'")
    )
    apply_errors: int | None
    apply_conflicts: int | None
    schedule: str | None
    last_sync: datetime | None
    last_sync_ok: bool | None
    next_sync: datetime | None
    last_heal: str | None = field(metadata=_doc("when the group's stream was last healed, and why"))
    verified: str = field(metadata=_doc("the last verification: 'equal', 'differs' or 'never'"))
    verified_at: datetime | None = field(
        metadata=_doc("when the list was last verified (verify_schedule, verify)")
    )
    verified_differences: int | None = field(
        metadata=_doc("rows missing, extra or changed at that verification")
    )
    verify_schedule: str | None = field(
        metadata=_doc("when this Subscriber verifies its replicas (None: off)")
    )
    warning: str | None = field(metadata=_doc("e.g. a closed window's slot close to being lost"))
    last_error: str | None

    def as_json(self) -> dict[str, Cell]:
        return {name: getattr(self, name) for name in SUBSCRIBER_FIELDS}


#: The keys of `status --json` on a Subscriber, in order (documented in docs/cli.md).
SUBSCRIBER_FIELDS = tuple(column.name for column in fields(StatusRow))


@dataclass(frozen=True)
class OrphanSlot:
    """A slot (and publication) left on a Leader that was down when its group was dropped:
    `status --json` shows it as a row of its own, every other key null."""

    leader_url: str
    group: str
    last_error: str
    state: str = "orphan-slot"
    enabled: bool = False

    def as_json(self) -> dict[str, Cell]:
        values = asdict(self)
        return {name: values.get(name) for name in SUBSCRIBER_FIELDS}


@dataclass(frozen=True)
class StreamRow:
    """On the Leader: one Subscriber group that streams a list, as its slot shows it."""

    subscriber: str
    group: str
    slot_exists: bool
    active: bool
    wal_status: str | None
    lag_bytes: int | None
    retained_wal_bytes: int | None
    last_confirmed: datetime | None
    #: what the slot's walsenders decoded since the statistics began (pg_stat_replication_slots)
    decoded_bytes: int | None
    #: the CPU its walsender has used since it started (None: not streaming, or another host)
    walsender_cpu_seconds: float | None


@dataclass(frozen=True)
class PublishedRow:
    """On the Leader: a list some Subscriber replicates, and the streams that carry it."""

    list: int
    list_name: str | None
    dossiers: int | None
    faces: int | None
    subscribers: builtins.list[StreamRow]


#: Share of the allowed WAL a closed window's slot may hold before status warns.
RETENTION_WARNING = 0.8


def subscriber_status(config: Config, local_list_id: int | None = None) -> list[StatusRow | OrphanSlot]:
    """Each replica list (or only `local_list_id`), then each orphan slot."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        catalog.require_role(conn, "subscriber", "status of replicas")
        return _subscriber_rows(conn, config, local_list_id)


def links(config: Config, local_list_id: int | None = None) -> list[StatusRow]:
    """The replica lists only (what the HTTP API and /metrics show)."""
    return [row for row in subscriber_status(config, local_list_id) if isinstance(row, StatusRow)]


def leader_status(config: Config) -> list[PublishedRow]:
    """On the Leader: each published list, and each Subscriber group that streams it."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        catalog.require_role(conn, "leader", "status of published lists")
        return _published(conn)


def _subscriber_rows(
    conn: pg.Connection, config: Config, local_list_id: int | None
) -> list[StatusRow | OrphanSlot]:
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
        leader_side = pool.submit(_leader_views, Logins(conn, this, config, may_enroll=False), links, shown)
        local = _LocalView(conn, links)
        remote = leader_side.result()
    states = {link.local_list_id: link.state for link in links}
    result: list[StatusRow | OrphanSlot] = [
        _row(link, shown[link.group_id], local, remote.get(shown[link.group_id].leader_url), states, config)
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
        self.heartbeats = subscriber.heartbeats(conn)
        self.copied = subscriber.copies_in_progress(
            conn, [link.local_list_id for link in links if link.needs_copy]
        )


class _LeaderView:
    """The Leader's side of the shown links of one Leader: two calls on one connection."""

    def __init__(self) -> None:
        self.lists: dict[int, ListInfo] = {}
        self.groups: dict[str, GroupSlot] = {}
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


@dataclass(frozen=True)
class _LeaderSide:
    """What a row shows of the Leader: nothing when it could not be asked."""

    leader_dossiers: int | None = None
    leader_faces: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    retained_wal_bytes: int | None = None
    wal_status: str | None = None
    warning: str | None = None
    error: str | None = None


def _row(
    link: Link,
    group: Group,
    local: _LocalView,
    remote: _LeaderView | None,
    states: dict[int, str],
    config: Config,
) -> StatusRow:
    counts = local.counts.get(link.local_list_id)
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
    side = _leader_side(link, group, local, remote, closed=windowed and not enabled, config=config)
    beat = local.heartbeats.get(group.name)
    return StatusRow(
        local_list=link.local_list_id,
        local_list_name=counts["name"] if counts else None,
        remote_list=link.remote_list_id,
        leader=group.leader_node_name,
        leader_url=mask_conninfo(group.leader_url),
        leader_host=remote.host if remote else None,
        group=group.name,
        state=link.state if sub is not None or link.needs_copy or link.state == "detaching" else "error",
        stream=stream_note(facts, now) if sub is not None else "no subscription",
        enabled=enabled,
        leader_available=group.leader_available,
        dossiers=counts["dossiers"] if counts else None,
        faces=counts["faces"] if counts else None,
        leader_dossiers=side.leader_dossiers,
        leader_faces=side.leader_faces,
        lag_bytes=side.lag_bytes,
        lag_seconds=side.lag_seconds,
        leader_time_reached=beat.beat_at if beat is not None and beat.seq > 0 else None,
        retained_wal_bytes=side.retained_wal_bytes,
        wal_status=side.wal_status,
        copy=_copy_progress(link, local),
        apply_errors=sub["errors"] if sub else None,
        apply_conflicts=sub["conflicts"] if sub else None,
        schedule=schedule.text if schedule else None,
        last_sync=last["finished_at"] if last else None,
        last_sync_ok=last["ok"] if last else None,
        next_sync=schedule.next_after(now) if schedule else None,
        last_heal=f"{heal.finished_at.isoformat(timespec='seconds')}: {heal.note}" if heal else None,
        # equal, differs, or never: the latest verification that compared (verify.py)
        verified=("equal" if proof["equal"] else "differs") if proof else "never",
        verified_at=proof["finished_at"] if proof else None,
        verified_differences=proof["differences"] if proof else None,
        verify_schedule=config.verify_schedule.text if config.verify_schedule else None,
        warning=side.warning,
        last_error=link.last_error
        or group.last_error
        or (last["error"] if last and not last["ok"] else None)
        or side.error,
    )


def _leader_side(
    link: Link, group: Group, local: _LocalView, remote: _LeaderView | None, *, closed: bool, config: Config
) -> _LeaderSide:
    if remote is None or remote.error is not None:
        return _LeaderSide(error=remote.error if remote else None)
    info = remote.lists.get(link.remote_list_id)
    slot = remote.groups.get(group.name)
    lag = subscriber.replica_lag(slot, local.heartbeats.get(group.name))
    if slot is None or not slot.slot_exists:
        return _LeaderSide(
            leader_dossiers=info["dossiers"] if info else None,
            leader_faces=info["faces"] if info else None,
            lag_seconds=lag,
            wal_status="missing",
            error="the Leader has no slot for this group: run pgsync-dossier sync",
        )
    return _LeaderSide(
        leader_dossiers=info["dossiers"] if info else None,
        leader_faces=info["faces"] if info else None,
        lag_bytes=slot.lag_bytes,
        lag_seconds=lag,
        retained_wal_bytes=slot.retained_bytes,
        wal_status=slot.wal_status,
        warning=_retention_warning(slot, closed=closed, budget=config.wal_retention_budget),
    )


def _retention_warning(slot: GroupSlot, *, closed: bool, budget: int | None) -> str | None:
    """Warn before the Leader loses a closed window's slot: past 80% of its
    max_slot_wal_keep_size (or of wal_retention_budget when the Leader sets no limit)."""
    if slot.wal_status in ("unreserved", "lost"):
        return f"the Leader is about to drop the WAL this group's slot needs (wal_status {slot.wal_status})"
    limit = slot.max_slot_wal_keep_size if slot.max_slot_wal_keep_size > 0 else budget
    retained = slot.retained_bytes or 0
    if not closed or not limit or retained <= RETENTION_WARNING * limit:
        return None
    what = "max_slot_wal_keep_size" if slot.max_slot_wal_keep_size > 0 else "wal_retention_budget"
    return (
        f"the closed window's slot holds {retained / 2**20:.0f} MB of WAL, {100 * retained / limit:.0f}% "
        f"of the Leader's {what} ({limit / 2**20:.0f} MB): sync before it is lost "
        "(it would then be healed by a repair)"
    )


def _copy_progress(link: Link, local: _LocalView) -> str:
    if not link.needs_copy:
        return "done"
    copied = local.copied.get(link.local_list_id)
    if copied is None:
        return "pending"
    return f"{copied}/{link.copy_expected if link.copy_expected is not None else '?'} rows"


def _orphans(conn: pg.Connection) -> list[OrphanSlot]:
    return [
        OrphanSlot(
            leader_url=mask_conninfo(row["leader_url"]),
            group=row["slot_name"],
            last_error=f"slot {row['slot_name']} is still on the Leader (dropped while it was down); "
            "the next attach, detach, sync or tick that reaches the Leader drops it",
        )
        for row in catalog.orphans(conn)
    ]


def leader_decoding(config: Config) -> str:
    """On the Leader: what its streams spend decoding its WAL, one line (decode_load)."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        return decode_load.measure(conn).note()


def leader_warnings(config: Config) -> list[str]:
    """On the Leader: leader_checks, on a connection of its own."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        return leader_checks(conn)


def leader_checks(conn: pg.Connection) -> list[str]:
    """On a Leader: what its standbys lack for the streams to survive a failover, and what
    Subscriber logins could reach beyond their streams (setup and status both say it)."""
    return standby.failover_warnings(conn) + exposure.warnings(conn)


def _published(conn: pg.Connection) -> list[PublishedRow]:
    registered = leader_install.registered_groups(conn)
    list_ids = sorted({list_id for group in registered for list_id in group.lists})
    info = leader_install.lists_info(conn, list_ids)
    return [
        PublishedRow(
            list=list_id,
            list_name=info[list_id]["name"] if list_id in info else None,
            dossiers=info[list_id]["dossiers"] if list_id in info else None,
            faces=info[list_id]["faces"] if list_id in info else None,
            subscribers=[
                StreamRow(
                    subscriber=group.subscriber_node,
                    group=group.name,
                    slot_exists=group.slot_exists,
                    active=group.active,
                    wal_status=group.wal_status,
                    lag_bytes=group.lag_bytes,
                    retained_wal_bytes=group.retained_bytes,
                    last_confirmed=group.last_confirmed,
                    decoded_bytes=group.decoded_bytes,
                    walsender_cpu_seconds=decode_load.walsender_cpu_seconds(group.active_pid),
                )
                for group in registered
                if list_id in group.lists
            ],
        )
        for list_id in list_ids
    ]

"""The Subscriber's catalog (schema pgsync): typed rows, and the only code that writes them.

Every other module reads groups, links and sync runs through these functions and changes
them only by calling one of them, so what a state means is decided here and in sql/catalog.sql.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypedDict, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row, kwargs_row

from pgsync_dossier import SCHEMA_REVISION, pg
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.placement import Verdict, verdict

HISTORY_DAYS = 30

T = TypeVar("T")
D = TypeVar("D")


class LinkState(StrEnum):
    ATTACHING = "attaching"  # recorded and mapped; its copy has not finished
    COPYING = "copying"  # the orchestrator is copying it now (the group is paused)
    READY = "ready"
    PAUSED = "paused"  # the face models of the Leader and this Subscriber differ
    DETACHING = "detaching"
    ERROR = "error"
    REPAIRING = "repairing"  # an in-place repair is owed (after a lost slot, say)


#: States in which a link still needs the orchestrator's copy.
NEEDS_COPY = (LinkState.ATTACHING, LinkState.COPYING)


@dataclass(frozen=True)
class Node:
    role: str
    node_name: str
    node_tag: str
    placement: str | None
    upgrading_from: str | None
    timeline: int | None  # the WAL timeline its database was on when last opened
    face_model: str
    token_verifier: str
    sync_schedule: str | None
    sync_at_startup: bool
    sync_at_creation: bool


@dataclass(frozen=True)
class Group:
    """One replication stream: (Leader, this Subscriber, schedule override)."""

    id: int
    name: str  # of the subscription, the slot and the Leader's publication
    leader_id: str
    leader_url: str
    leader_node_name: str | None
    schedule: str | None  # the links' own --schedule; None: the Leader's
    leader_schedule: str | None
    leader_face_model: str | None  # as the upstream last said; a relay passes a change on
    leader_available: bool
    leader_unavailable_since: datetime | None
    copying_list_id: int | None  # the stream is paused while this list is copied...
    paused_until: datetime | None  # ... until then at the latest
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    #: where the Leader's slot stood when this stream last stopped; a slot found further on
    #: was consumed by someone else meanwhile (None: streaming, or unknown)
    stopped_at_lsn: int | None
    #: other upstreams of the same lists (a second relay, the Leader itself), in order, that
    #: tick moves the stream to when this one stays unreachable (fallback.py)
    fallback_urls: list[str]

    @property
    def effective_schedule(self) -> str | None:
        """A group's own schedule overrides the Leader's; neither means continuous."""
        return self.schedule or self.leader_schedule

    @property
    def leader_shown(self) -> str:
        return self.leader_node_name or mask_conninfo(self.leader_url)


@dataclass(frozen=True)
class Link:
    """One replica list: Leader list `remote_list_id` copied into local list `local_list_id`."""

    id: int
    local_list_id: int
    remote_list_id: int
    leader_id: str
    group_id: int
    state: str
    legacy_subscription: str | None  # version 1's own subscription, until the upgrade copy
    copy_expected: int | None  # rows (dossiers + faces) the last copy expected
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    settle_since: int | None  # a copy's first Leader position, until the copy is done
    origin_id: str | None  # the Leader the list comes from, through relays (None: leader_id)
    #: paused, and owing an in-place repair when it resumes (set_group_links_repairing)
    repair_owed: bool

    @property
    def origin(self) -> str:
        return self.origin_id or self.leader_id

    @property
    def needs_copy(self) -> bool:
        return self.state in NEEDS_COPY or self.legacy_subscription is not None

    @property
    def needs_repair(self) -> bool:
        return self.state == LinkState.REPAIRING


@dataclass(frozen=True)
class Run:
    id: int
    started_at: datetime


@dataclass(frozen=True)
class SyncDay:
    """A group's finished syncs on one UTC day."""

    day: date
    ok: int
    failed: int


@dataclass(frozen=True)
class LagHour:
    """A group's greatest lag within one UTC hour (`at`, its start)."""

    at: datetime
    lag_seconds: float | None
    lag_bytes: int | None


# Rows that status, /metrics, links and verify read by key: TypedDicts (kwargs_row), typed here.
class LastRun(TypedDict):
    """A group's latest finished sync."""

    group_id: int
    finished_at: datetime
    ok: bool
    error: str | None


class LastVerification(TypedDict):
    """A list's latest verification that compared."""

    local_list_id: int
    finished_at: datetime
    equal: bool
    reason: str
    differences: int | None


class ListCounts(TypedDict):
    """A local list's name and rows (links reads them by key to refuse a non-empty list)."""

    list_id: int
    name: str
    dossiers: int
    faces: int


@dataclass(frozen=True)
class LocalList:
    """A list of this Subscriber, as its user picks where a Leader list goes."""

    id: int
    name: str
    empty: bool  # no dossier and no face
    replica_of: int | None  # the Leader list it replicates


@dataclass(frozen=True)
class RunHistory:
    """A group's sync history, as /metrics counts it."""

    group_id: int
    last_success: Decimal | None  # epoch seconds of the last successful sync
    failures: int  # failed runs within HISTORY_DAYS


@dataclass(frozen=True)
class LastHeal:
    """A group's latest finished heal: when, and what was found and done."""

    group_id: int
    finished_at: datetime
    note: str | None


class Orphan(TypedDict):
    """A slot (and publication) left on a Leader that was down, dropped when it answers."""

    slot_name: str
    leader_url: str
    leader_id: str
    detached_at: datetime
    last_error: str | None


def _query(name: str) -> sql.Composed:
    return pg.query(name, "catalog.sql")


Params = Mapping[str, object]


def _all(conn: pg.Connection, cls: type[T], name: str, params: Params | None = None) -> list[T]:
    with conn.cursor(row_factory=class_row(cls)) as cur:
        return cur.execute(_query(name), params).fetchall()


def _one(conn: pg.Connection, cls: type[T], name: str, params: Params | None = None) -> T | None:
    with conn.cursor(row_factory=class_row(cls)) as cur:
        return cur.execute(_query(name), params).fetchone()


def _dicts(conn: pg.Connection, row: Callable[..., D], name: str, params: Params | None = None) -> list[D]:
    with conn.cursor(row_factory=kwargs_row(row)) as cur:
        return cur.execute(_query(name), params).fetchall()


def _run(conn: pg.Connection, name: str, params: Params | None = None) -> int:
    return conn.execute(_query(name), params).rowcount


# -- node ------------------------------------------------------------------------------------
def node(conn: pg.Connection) -> Node | None:
    return _one(conn, Node, "node")


def read_node(conn: pg.Connection) -> Node:
    """This database's recorded node; refused when the database is not migrated or set up, or
    migrated to an older revision than this code's (after the package was upgraded, before
    `migrate`: the code would read columns the schema has not got yet). A later revision is
    fine: a newer pgsync-dossier migrated it while this one still runs, and a migration only
    adds what older code can ignore (tests/integration/test_schema_skew.py)."""
    row = conn.execute(_query("schema_revision")).fetchone()
    revision = row["revision"] if row else None
    if revision is not None and revision.isdigit() and int(revision) < int(SCHEMA_REVISION):
        raise PreconditionFailed(
            f"this database's schema is at revision {revision}, and this pgsync-dossier needs "
            f"{SCHEMA_REVISION}: run pgsync-dossier migrate, then setup",
            code="not_migrated",
        )
    try:
        found = node(conn)
    except psycopg.errors.UndefinedTable:
        raise PreconditionFailed(
            "this database has no pgsync catalog: run pgsync-dossier migrate, then setup", code="not_migrated"
        ) from None
    if found is None:
        raise PreconditionFailed(
            "this node is not set up: run pgsync-dossier setup first", code="node_not_set_up"
        )
    return found


def require_role(conn: pg.Connection, role: str, command: str) -> Node:
    """This database's recorded node, which must have been set up with `role`; a relay is both
    a Subscriber and (for the lists it replicates) a Leader."""
    found = read_node(conn)
    if found.role != role and found.role != "relay":
        raise PreconditionFailed(
            f"{command} runs on a {role}; this node is a {found.role}", code="wrong_role"
        )
    return found


def record_node(
    conn: pg.Connection,
    *,
    role: str,
    node_name: str,
    face_model: str,
    verifier: str,
    schedule: str | None,
    startup: bool,
    creation: bool,
) -> None:
    """This node as `setup` records it (made, or updated in place)."""
    _run(
        conn,
        "record_node",
        {
            "role": role,
            "node_name": node_name,
            "face_model": face_model,
            "verifier": verifier,
            "schedule": schedule,
            "startup": startup,
            "creation": creation,
        },
    )


def set_enrollment(conn: pg.Connection, enrollment: str) -> None:
    _run(conn, "set_enrollment", {"enrollment": enrollment})


def settle_leader_identity(conn: pg.Connection, software_version: str) -> None:
    """On a Leader: its identity, recorded once, and the version that set it up."""
    _run(conn, "settle_leader_identity", {"version": software_version})


def placement(conn: pg.Connection) -> str:
    row = conn.execute(_query("placement")).fetchone()
    assert row is not None
    return str(row["placement"])


def set_placement(conn: pg.Connection, where: str) -> None:
    _run(conn, "set_placement", {"placement": where})


#: What a promotion found and did, in each group's history and on each replica until repaired.
PROMOTED_NOTE = (
    "this database moved to a new timeline (a standby promoted, or a point-in-time recovery): "
    "what its old primary applied last may be missing, and the Leaders' slots moved past it: "
    "each list repaired in place at its next sync"
)


def whereabouts(conn: pg.Connection, node: Node) -> tuple[Verdict, int | None]:
    """Where this node's database lives against where it was recorded (placement.py), and the
    WAL timeline it writes on now (None on a standby, which is still in recovery)."""
    row = conn.execute(_query("timeline")).fetchone()
    assert row is not None
    timeline = int(row["walfile"][:8], 16) if row["walfile"] else None
    moved = verdict(node.placement, node.upgrading_from, upgrade_mark(conn), node.timeline, timeline)
    return moved, timeline


def set_timeline(conn: pg.Connection, timeline: int | None) -> None:
    if timeline is not None:
        _run(conn, "set_timeline", {"timeline": timeline})


def settle_promotion(conn: pg.Connection, timeline: int | None) -> None:
    """A promoted standby stays this node, in one transaction: every replica owes an in-place
    repair (a paused one when it resumes), which the next sync performs; each group forgets
    where its stream stopped (the old primary's stops are not this one's) and records the heal."""
    assert timeline is not None, "a promotion is seen on a primary only"
    with conn.transaction():
        claimed = conn.execute(
            _query("claim_promotion"), {"placement": placement(conn), "timeline": timeline}
        ).fetchone()
        if claimed is None:
            return  # another command settled it
        for group in groups(conn):
            set_group_links_repairing(conn, group.id, PROMOTED_NOTE, including_paused=True)
            set_stopped_at(conn, group.id, None)
            record_run(conn, group.id, "heal", True, PROMOTED_NOTE)


def settle_upgrade(conn: pg.Connection, where: str) -> None:
    _run(conn, "settle_upgrade", {"placement": where})


def upgrade_mark(conn: pg.Connection) -> str:
    row = conn.execute(_query("upgrade_mark")).fetchone()
    assert row is not None
    return str(row["mark"])


def mark_upgrading(conn: pg.Connection) -> None:
    _run(conn, "mark_upgrading", {"mark": upgrade_mark(conn)})


def new_leader_id(conn: pg.Connection) -> None:
    _run(conn, "new_leader_id")


def new_node_tag(conn: pg.Connection, where: str) -> str:
    row = conn.execute(_query("new_node_tag"), {"placement": where}).fetchone()
    assert row is not None
    return str(row["node_tag"])


def rename_group(conn: pg.Connection, group_id: int, name: str) -> None:
    _run(conn, "rename_group", {"id": group_id, "name": name})


# -- groups ----------------------------------------------------------------------------------
def groups(conn: pg.Connection) -> list[Group]:
    return _all(conn, Group, "groups")


def has_groups(conn: pg.Connection) -> bool:
    return conn.execute(_query("has_groups")).fetchone() is not None


def group(conn: pg.Connection, group_id: int) -> Group | None:
    return _one(conn, Group, "group_by_id", {"id": group_id})


def find_or_make_group(
    conn: pg.Connection,
    *,
    tag: str,
    leader_id: str,
    leader_url: str,
    leader_node_name: str,
    schedule: str | None,
    leader_schedule: str | None,
) -> Group:
    """The group of this Leader and schedule override, made when it is the first of its kind."""
    key = {"leader_id": leader_id, "schedule": schedule}
    found = find_group(conn, leader_id, schedule)
    if found is None:
        made = _one(
            conn,
            Group,
            "insert_group",
            {
                **key,
                "tag": tag,
                "leader_url": leader_url,
                "leader_node_name": leader_node_name,
                "leader_schedule": leader_schedule,
            },
        )
        found = made or _one(conn, Group, "group_by_key", key)  # a concurrent attach made it
    assert found is not None
    if found.leader_url != leader_url:
        # The Leader answers at another address now (it moved, or it is given another way).
        _run(conn, "set_group_url", {"id": found.id, "leader_url": leader_url})
        found = group(conn, found.id) or found
    return found


def find_group(conn: pg.Connection, leader_id: str, schedule: str | None) -> Group | None:
    """The group of this Leader (or relay) and schedule override, if there is one."""
    return _one(conn, Group, "group_by_key", {"leader_id": leader_id, "schedule": schedule})


def set_fallback_urls(conn: pg.Connection, group_id: int, urls: list[str]) -> None:
    _run(conn, "set_fallback_urls", {"id": group_id, "urls": urls})


def move_group(
    conn: pg.Connection,
    group_id: int,
    *,
    name: str,
    leader_id: str,
    leader_url: str,
    node_name: str,
    fallbacks: list[str],
) -> None:
    """The group streams from another upstream of the same lists from now on (fallback.py),
    under a new name: its slot on the old one stays an orphan until it is dropped there."""
    _run(
        conn,
        "move_group",
        {
            "id": group_id,
            "name": name,
            "leader_id": leader_id,
            "leader_url": leader_url,
            "leader_node_name": node_name,
            "fallbacks": fallbacks,
        },
    )
    _run(conn, "move_group_links", {"group_id": group_id, "leader_id": leader_id})


def delete_group(conn: pg.Connection, group: Group) -> None:
    delete_heartbeat(conn, group)
    _run(conn, "delete_group", {"id": group.id})


def delete_heartbeat(conn: pg.Connection, group: Group) -> None:
    _run(conn, "delete_heartbeat", {"name": group.name})


def ensure_heartbeat(conn: pg.Connection, group: Group) -> None:
    _run(conn, "ensure_heartbeat", {"name": group.name})


def set_leader_facts(
    conn: pg.Connection, group_id: int, leader_schedule: str | None, node_name: str, face_model: str
) -> None:
    _run(
        conn,
        "set_group_leader_facts",
        {
            "id": group_id,
            "leader_schedule": leader_schedule,
            "leader_node_name": node_name,
            "leader_face_model": face_model,
        },
    )


def set_copy_pause(
    conn: pg.Connection, group_id: int, local_list_id: int | None, until: datetime | None
) -> None:
    _run(conn, "set_group_copy_pause", {"id": group_id, "list": local_list_id, "until": until})


def set_stopped_at(conn: pg.Connection, group_id: int, lsn: int | None) -> None:
    _run(conn, "set_stopped_at", {"id": group_id, "lsn": lsn})


def set_group_links_repairing(
    conn: pg.Connection, group_id: int, note: str, *, including_paused: bool = False
) -> None:
    """The group's replicas owe an in-place repair. A paused one too, `including_paused` (when
    the group moves to another upstream, fallback.py): it keeps its pause, which keeps the
    stream closed while the face models differ, and owes the repair when it resumes
    (resume_group_links)."""
    _run(
        conn,
        "set_group_links_repairing",
        {"group_id": group_id, "note": note, "paused_too": including_paused},
    )


def pause_group_links(conn: pg.Connection, group_id: int, message: str) -> None:
    """The group's lists may not stream (face models or schemas differ): paused with this
    message. A list owing a repair keeps owing it, for when it resumes."""
    _run(conn, "pause_group_links", {"group_id": group_id, "message": message})


#: A paused list that resumed owing a repair (its cause is in the sync history's heal).
REPAIR_OWED_NOTE = "resumed: an in-place repair owed while it was paused (see the last heal in its history)"


def resume_group_links(conn: pg.Connection, group_id: int) -> None:
    """The group's paused lists may stream again: ready, or repairing where a repair is owed."""
    _run(conn, "resume_group_links", {"group_id": group_id, "note": REPAIR_OWED_NOTE})


def record_run(conn: pg.Connection, group_id: int, reason: str, ok: bool, note: str) -> None:
    """A finished run of its own (a heal: what was found and what was done)."""
    _run(conn, "record_run", {"group_id": group_id, "reason": reason, "ok": ok, "note": note})


def set_run_note(conn: pg.Connection, run: Run, note: str) -> None:
    _run(conn, "set_run_note", {"id": run.id, "note": note})


def last_heals(conn: pg.Connection) -> dict[int, LastHeal]:
    """Heals that finished: a heal still running has no time to show yet."""
    return {row.group_id: row for row in _all(conn, LastHeal, "last_heals")}


def set_group_error(conn: pg.Connection, group_id: int, error: str | None) -> None:
    _run(conn, "set_group_error", {"id": group_id, "error": error})


def set_leader_available(conn: pg.Connection, leader_id: str, available: bool) -> int:
    """Record a Leader as reachable or not. The guard trigger reads this row to allow local
    deletes, so it is written only by commands that tried to reach the Leader."""
    return _run(conn, "set_leader_available", {"leader_id": leader_id, "available": available})


# -- links -----------------------------------------------------------------------------------
def links(conn: pg.Connection) -> list[Link]:
    return _all(conn, Link, "links")


def link_for_list(conn: pg.Connection, local_list_id: int) -> Link | None:
    return _one(conn, Link, "link_for_list", {"list": local_list_id})


def link_for_origin(conn: pg.Connection, origin_id: str, remote_list_id: int) -> Link | None:
    """The replica of this Leader's list, whichever upstream (the Leader, a relay) brings it."""
    return _one(conn, Link, "link_for_origin", {"origin_id": origin_id, "remote": remote_list_id})


def link_for_remote(conn: pg.Connection, leader_id: str, remote_list_id: int) -> Link | None:
    return _one(conn, Link, "link_for_remote", {"leader_id": leader_id, "remote": remote_list_id})


def insert_link(
    conn: pg.Connection,
    local_list_id: int,
    remote_list_id: int,
    leader_id: str,
    group_id: int,
    origin_id: str,
) -> Link:
    made = _one(
        conn,
        Link,
        "insert_link",
        {
            "local": local_list_id,
            "remote": remote_list_id,
            "leader_id": leader_id,
            "group_id": group_id,
            "origin_id": origin_id,
        },
    )
    assert made is not None
    return made


def delete_link(conn: pg.Connection, local_list_id: int) -> None:
    _run(conn, "delete_link", {"list": local_list_id})


def set_link_state(
    conn: pg.Connection, local_list_id: int, state: LinkState, error: str | None = None
) -> None:
    _run(conn, "set_link_state", {"list": local_list_id, "state": state.value, "error": error})


def set_link_error(conn: pg.Connection, local_list_id: int, error: str | None) -> None:
    _run(conn, "set_link_error", {"list": local_list_id, "error": error})


def set_group_links_state(
    conn: pg.Connection,
    group_id: int,
    state: LinkState,
    error: str | None = None,
    *,
    from_states: tuple[LinkState, ...],
) -> None:
    _run(
        conn,
        "set_group_links_state",
        {
            "group_id": group_id,
            "state": state.value,
            "error": error,
            "from_states": [s.value for s in from_states],
        },
    )


def keep_settle_since(conn: pg.Connection, local_list_id: int, position: int | None) -> int | None:
    """The earliest Leader position a copy of the list settles from (kept across attempts),
    or none (None: the copy is done). Returns the position kept."""
    params = {"list": local_list_id, "position": position}
    found = conn.execute(_query("keep_settle_since"), params).fetchone()
    return None if found is None or found["settle_since"] is None else int(found["settle_since"])


def set_copy_expected(conn: pg.Connection, local_list_id: int, expected: int) -> None:
    _run(conn, "set_copy_expected", {"list": local_list_id, "expected": expected})


def clear_legacy_subscription(conn: pg.Connection, local_list_id: int) -> None:
    _run(conn, "clear_legacy_subscription", {"list": local_list_id})


# -- sync runs -------------------------------------------------------------------------------
def start_run(conn: pg.Connection, group_id: int, reason: str, window_at: datetime | None) -> Run:
    run = _one(conn, Run, "start_run", {"group_id": group_id, "reason": reason, "window_at": window_at})
    assert run is not None
    return run


def finish_run(conn: pg.Connection, run: Run, ok: bool, seq: int | None, error: str | None) -> datetime:
    row = conn.execute(_query("finish_run"), {"id": run.id, "ok": ok, "seq": seq, "error": error}).fetchone()
    assert row is not None
    finished: datetime = row["finished_at"]
    return finished


def forget_run(conn: pg.Connection, run: Run) -> None:
    _run(conn, "forget_run", {"id": run.id})


def last_synced_mark(conn: pg.Connection, group_id: int) -> datetime:
    row = conn.execute(_query("last_synced_mark"), {"id": group_id}).fetchone()
    assert row is not None
    mark: datetime = row["mark"]
    return mark


def last_runs(conn: pg.Connection) -> dict[int, LastRun]:
    return {row["group_id"]: row for row in _dicts(conn, LastRun, "last_runs")}


def run_history(conn: pg.Connection) -> dict[int, RunHistory]:
    return {row.group_id: row for row in _all(conn, RunHistory, "run_history", {"days": HISTORY_DAYS})}


def prune_history(conn: pg.Connection) -> None:
    """Runs, lag samples and verifications are kept as long as the history shows them, and no
    longer (each list's latest verification stays: it is what status reports)."""
    _run(conn, "prune_runs", {"days": HISTORY_DAYS})
    _run(conn, "prune_lag_samples", {"days": HISTORY_DAYS})
    _run(conn, "prune_verifications", {"days": HISTORY_DAYS})


@dataclass(frozen=True)
class Verification:
    """One comparison of a replica with its Leader list, as recorded."""

    local_list_id: int
    remote_list_id: int
    reason: str  # schedule, manual, repair
    started_at: datetime
    leader_lsn: int | None
    #: None: it could not compare (error says why)
    equal: bool | None
    #: (table, kind) -> rows: dossiers/faces, missing/extra/changed
    counts: dict[tuple[str, str], int] | None = None
    error: str | None = None


def record_verification(conn: pg.Connection, found: Verification) -> None:
    counts = found.counts or {}
    _run(
        conn,
        "record_verification",
        {
            "local": found.local_list_id,
            "remote": found.remote_list_id,
            "reason": found.reason,
            "started_at": found.started_at,
            "leader_lsn": found.leader_lsn,
            "equal": found.equal,
            "error": found.error,
            **{
                f"{table}_{kind}": counts.get((table, kind)) if found.counts is not None else None
                for table in ("dossiers", "faces")
                for kind in ("missing", "extra", "changed")
            },
        },
    )


def last_verifications(conn: pg.Connection) -> dict[int, LastVerification]:
    """Each list's latest verification that compared."""
    return {row["local_list_id"]: row for row in _dicts(conn, LastVerification, "last_verifications")}


def sync_days(conn: pg.Connection, group_id: int) -> list[SyncDay]:
    """Exactly HISTORY_DAYS days, oldest first, so a chart has one bar per day."""
    return _all(conn, SyncDay, "sync_days", {"group_id": group_id, "days": HISTORY_DAYS})


# -- lag history -----------------------------------------------------------------------------
def record_lag_sample(
    conn: pg.Connection, group_id: int, lag_bytes: int | None, lag_seconds: float | None
) -> None:
    _run(
        conn,
        "record_lag_sample",
        {"group_id": group_id, "lag_bytes": lag_bytes, "lag_seconds": lag_seconds},
    )


def record_caught_up(conn: pg.Connection, group_id: int) -> None:
    """A sync that reached its barrier holds everything the Leader had when it started: no lag
    in time. The bytes the Leader wrote since were not measured."""
    record_lag_sample(conn, group_id, None, 0.0)


def lag_hours(conn: pg.Connection, group_id: int) -> list[LagHour]:
    """Hourly maxima: a month of probes stays a few hundred points, and a short peak shows."""
    return _all(conn, LagHour, "lag_hours", {"group_id": group_id, "days": HISTORY_DAYS})


# -- orphans ---------------------------------------------------------------------------------
def orphans(conn: pg.Connection) -> list[Orphan]:
    return _dicts(conn, Orphan, "orphans")


def forget_revived_orphans(conn: pg.Connection) -> None:
    _run(conn, "forget_revived_orphans")


def record_orphan(conn: pg.Connection, name: str, leader_url: str, leader_id: str) -> None:
    """A slot (and publication) left on a Leader that was down: dropped when it answers."""
    _run(conn, "record_orphan", {"name": name, "leader_url": leader_url, "leader_id": leader_id})


def set_orphan_error(conn: pg.Connection, name: str, error: str) -> None:
    _run(conn, "set_orphan_error", {"name": name, "error": error})


def delete_orphan(conn: pg.Connection, name: str) -> None:
    _run(conn, "delete_orphan", {"name": name})


# -- local lists -----------------------------------------------------------------------------
def local_lists(conn: pg.Connection, *, attachable_only: bool = False) -> list[LocalList]:
    """This Subscriber's lists by name; `attachable_only`: the empty ones that replicate
    nothing, the only ones an attach takes."""
    lists = _all(conn, LocalList, "local_lists")
    return [one for one in lists if one.empty and one.replica_of is None] if attachable_only else lists


def list_counts(conn: pg.Connection, list_ids: list[int]) -> dict[int, ListCounts]:
    """Name and rows of each local list named (missing lists are absent)."""
    return {row["list_id"]: row for row in _dicts(conn, ListCounts, "list_counts", {"lists": list_ids})}

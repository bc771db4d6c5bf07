"""attach / detach: the state machine of one link, driving both the Leader and the Subscriber.

Every step is idempotent and progress is recorded in pgsync.link, so running a command again
after a crash (or twice) converges to one healthy link, or to none. Refusals happen before
anything is written, so a refused attach leaves nothing behind on either side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsync_dossier import pg, subscriber
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import (
    OperationFailed,
    PgsyncError,
    PreconditionFailed,
    ServerUnreachable,
    UsageError,
)
from pgsync_dossier.leader import LeaderClient, LeaderFacts
from pgsync_dossier.node import require_role
from pgsync_dossier.sync import set_state, sync_link
from pgsync_dossier.token import matches_verifier

log = logging.getLogger(__name__)

DEFAULT_COPY_TIMEOUT_S = 3600.0

Progress = Callable[[int, int, int], None]  # (dossiers, faces, dossiers expected)


@dataclass(frozen=True)
class AttachRequest:
    remote_list_id: int
    leader_url: str
    local_list_id: int
    schedule: str | None = None


def _validate_url(url: str) -> None:
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        params = {}
    if not url.strip() or not params:
        raise UsageError(
            f"invalid Leader URL {mask_conninfo(url)!r}: give the Leader's PostgreSQL URL, "
            "e.g. postgresql://leader.example.org:5432/dossiers",
            code="invalid_url",
        )


def get_link(conn: pg.Connection, local_list_id: int) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM pgsync.link WHERE local_list_id = %s", [local_list_id]).fetchone()


def _check_leader(facts: LeaderFacts, config: Config, shown_url: str) -> None:
    if facts.role != "leader":
        raise PreconditionFailed(
            f"{shown_url} is a {facts.role}, not a Leader: attach to the Leader", code="not_a_leader"
        )
    if not matches_verifier(config.sync_token, facts.token_verifier):
        raise PreconditionFailed(
            f"the sync token differs from the Leader's ({facts.node_name}): "
            "use the Leader's sync_token on this Subscriber",
            code="token_mismatch",
        )
    if facts.face_model != config.face_model:
        raise PreconditionFailed(
            f"the face models differ: the Leader ({facts.node_name}) uses {facts.face_model!r}, "
            f"this Subscriber {config.face_model!r}; both must use the same neural network",
            code="face_model_mismatch",
        )


def attach(
    config: Config,
    request: AttachRequest,
    *,
    timeout_s: float = DEFAULT_COPY_TIMEOUT_S,
    on_progress: Progress | None = None,
    defer_first_sync: bool = False,
) -> dict[str, Any]:
    """Make the local list a replica. With `defer_first_sync`, return as soon as the link
    exists (state 'copying') and leave the first sync to the caller (the HTTP API runs it in
    the background); otherwise, with the Leader's sync_at_creation, wait for it."""
    _validate_url(request.leader_url)
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        node = require_role(conn, "subscriber", "attach")
        cleanup_orphan_slots(conn, config)
        if not pg.try_advisory_lock(conn, "list", request.local_list_id):
            raise PreconditionFailed(
                f"another attach or detach of list {request.local_list_id} is in progress: "
                "wait for it to finish",
                code="busy",
            )
        existing = _check_local(conn, request)
        with LeaderClient(request.leader_url, config.sync_token) as leader:
            return _attach(
                conn, leader, config, node, request, existing, timeout_s, on_progress, defer_first_sync
            )


def _check_local(conn: pg.Connection, request: AttachRequest) -> dict[str, Any] | None:
    """The local preconditions; returns the link of an earlier attempt at the same attach."""
    target = request.local_list_id
    if not conn.execute("SELECT 1 FROM public.dossier_list WHERE id = %s", [target]).fetchone():
        raise PreconditionFailed(
            f"local list {target} does not exist on this Subscriber: create it first",
            code="local_list_not_found",
        )
    existing = get_link(conn, target)
    if existing and (existing["remote_list_id"], existing["leader_url"]) != (
        request.remote_list_id,
        request.leader_url,
    ):
        raise PreconditionFailed(
            f"list {target} is already a replica of list {existing['remote_list_id']} on "
            f"{existing['leader_node_name'] or mask_conninfo(existing['leader_url'])}: "
            f"detach it first (pgsync-dossier detach {target})",
            code="already_replica",
        )
    if not existing:
        _refuse_non_empty(conn, target)
    return existing


def _attach(
    conn: pg.Connection,
    leader: LeaderClient,
    config: Config,
    node: dict[str, Any],
    request: AttachRequest,
    existing: dict[str, Any] | None,
    timeout_s: float,
    on_progress: Progress | None,
    defer_first_sync: bool,
) -> dict[str, Any]:
    target = request.local_list_id
    facts = leader.facts()
    _check_leader(facts, config, leader.shown_url)
    remote = leader.list_info(request.remote_list_id)
    if remote is None:
        raise PreconditionFailed(
            f"list {request.remote_list_id} does not exist on the Leader ({facts.node_name})",
            code="leader_list_not_found",
        )
    twin = conn.execute(
        "SELECT local_list_id FROM pgsync.link WHERE leader_id = %s AND remote_list_id = %s "
        "AND local_list_id <> %s",
        [facts.leader_id, request.remote_list_id, target],
    ).fetchone()
    if twin:
        raise PreconditionFailed(
            f"Leader list {request.remote_list_id} is already replicated into local list "
            f"{twin['local_list_id']} of this Subscriber; a Leader list has one replica per Subscriber",
            code="leader_list_already_replicated",
        )
    name = (
        existing["subscription_name"]
        if existing
        else subscriber.link_names(subscriber.node_tag(conn), request.remote_list_id, target)
    )
    schedule = request.schedule or facts.sync_schedule
    if existing and existing["state"] == "ready" and subscriber.subscription(conn, name) is not None:
        return _result(conn, request, facts, name, "ready", created=False, synced=False)
    if not existing:
        _record_link(conn, request, facts, name)
    try:
        publication = leader.publish(request.remote_list_id)
        leader.register(request.remote_list_id, node["node_name"], target, name)
        if subscriber.subscription(conn, name) is None:
            leader.drop_stale_slot(name)  # left by an attach killed inside CREATE SUBSCRIPTION
            # Windowed links stay disabled between windows; the first sync enables one.
            subscriber.create_subscription(
                conn, name, publication, request.leader_url, config.sync_token, enabled=schedule is None
            )
    except BaseException:
        if existing is None:  # only what this call created is undone; a resumed link stays
            _undo_attach(conn, leader, request.remote_list_id, target, name)
        raise
    set_state(conn, target, "copying")
    synced = False
    state = "ready"
    if facts.sync_at_creation and defer_first_sync:
        state = "copying"
    elif facts.sync_at_creation:
        link = get_link(conn, target)
        assert link is not None
        outcome = sync_link(
            conn,
            config,
            link,
            "creation",
            timeout_s,
            (lambda d, f: on_progress(d, f, int(remote["dossiers"]))) if on_progress else None,
        )
        if outcome.status != "synced":
            raise OperationFailed(f"the link is set up but its first sync failed: {outcome.error}")
        synced = True
    else:
        set_state(conn, target, "ready")
    return _result(conn, request, facts, name, state, created=existing is None, synced=synced)


def _result(
    conn: pg.Connection,
    request: AttachRequest,
    facts: LeaderFacts,
    name: str,
    state: str,
    *,
    created: bool,
    synced: bool,
) -> dict[str, Any]:
    dossiers, faces = subscriber.list_counts(conn, request.local_list_id)
    return {
        "local_list": request.local_list_id,
        "remote_list": request.remote_list_id,
        "leader": facts.node_name,
        "subscription": name,
        "state": state,
        "created": created,
        "synced": synced,
        "first_sync_pending": state == "copying",
        "dossiers": dossiers,
        "faces": faces,
    }


def _refuse_non_empty(conn: pg.Connection, list_id: int) -> None:
    dossiers, faces = subscriber.list_counts(conn, list_id)
    if dossiers or faces:
        # Faces without dossiers only exist after writes that bypassed the foreign keys.
        contents = f"{dossiers} dossiers" if dossiers else f"{faces} faces without dossiers"
        raise PreconditionFailed(
            f"synchronization canceled: watch list {list_id} already contains {contents}; it must be empty",
            code="list_not_empty",
        )


def _record_link(conn: pg.Connection, request: AttachRequest, facts: LeaderFacts, name: str) -> None:
    """Mark the list as a replica; from the commit on, local writes to it are refused.

    The list row is locked and touched first: a local insert that checked the guard before
    this commit waits on that lock (the guard takes FOR SHARE) and then sees the link.
    """
    with conn.transaction():
        conn.execute("SELECT 1 FROM public.dossier_list WHERE id = %s FOR UPDATE", [request.local_list_id])
        conn.execute(
            "UPDATE public.dossier_list SET modified_at = now() WHERE id = %s", [request.local_list_id]
        )
        _refuse_non_empty(conn, request.local_list_id)
        try:
            _insert_link(conn, request, facts, name)
        except psycopg.errors.UniqueViolation:
            raise PreconditionFailed(
                f"Leader list {request.remote_list_id} was just attached to another local list of "
                "this Subscriber; a Leader list has one replica per Subscriber",
                code="leader_list_already_replicated",
            ) from None


def _insert_link(conn: pg.Connection, request: AttachRequest, facts: LeaderFacts, name: str) -> None:
    conn.execute(
        """
        INSERT INTO pgsync.link (local_list_id, remote_list_id, leader_url, leader_id,
            leader_node_name, subscription_name, slot_name, schedule, leader_schedule, state)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'attaching')
        """,
        [
            request.local_list_id,
            request.remote_list_id,
            request.leader_url,
            facts.leader_id,
            facts.node_name,
            name,
            name,
            request.schedule,
            facts.sync_schedule,
        ],
    )


def _undo_attach(
    conn: pg.Connection, leader: LeaderClient, remote_list_id: int, local_list_id: int, name: str
) -> None:
    """Roll a failed fresh attach back so nothing is left on either side."""
    try:
        subscriber.drop_subscription(conn, name, leader_reachable=True)
    except psycopg.Error as exc:
        log.warning("could not drop subscription %s while undoing attach: %s", name, exc)
    try:
        leader.unregister(name)
        leader.unpublish_if_unused(remote_list_id)
    except PgsyncError as exc:
        log.warning("could not clean the Leader while undoing attach: %s", exc)
        link = get_link(conn, local_list_id)
        if link is not None:
            _record_orphan(conn, name, link["leader_url"], link["leader_id"])
    conn.execute("DELETE FROM pgsync.heartbeat WHERE list_id = %s", [local_list_id])
    conn.execute("DELETE FROM pgsync.link WHERE local_list_id = %s", [local_list_id])


def detach(config: Config, local_list_id: int, purge: bool = False) -> dict[str, Any]:
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        require_role(conn, "subscriber", "detach")
        link = get_link(conn, local_list_id)
        if link is None:
            raise PreconditionFailed(
                f"list {local_list_id} is not a replica: there is nothing to detach", code="not_a_replica"
            )
        if not pg.try_advisory_lock(conn, "list", local_list_id):
            raise PreconditionFailed(
                f"another attach or detach of list {local_list_id} is in progress: wait for it to finish",
                code="busy",
            )
        if not pg.try_advisory_lock(conn, "link", link["id"]):
            raise PreconditionFailed(
                f"a sync of list {local_list_id} is running: detach it when the sync is done", code="busy"
            )
        set_state(conn, local_list_id, "detaching")
        name = link["subscription_name"]
        leader: LeaderClient | None = None
        slot_dropped = False
        try:
            leader = LeaderClient(link["leader_url"], config.sync_token)
        except (ServerUnreachable, PreconditionFailed) as exc:
            log.warning("the Leader is unavailable (%s): its slot %s will be dropped later", exc, name)
        try:
            subscriber.drop_subscription(conn, name, leader_reachable=leader is not None)
            if leader is not None:
                leader.unregister(name)
                slot_dropped = True
        except PgsyncError as exc:
            log.warning("the Leader could not drop slot %s now (%s): it will be dropped later", name, exc)
        finally:
            if leader is not None:
                leader.close()
        if not slot_dropped:
            _record_orphan(conn, name, link["leader_url"], link["leader_id"])
        with conn.transaction():
            conn.execute("DELETE FROM pgsync.heartbeat WHERE list_id = %s", [local_list_id])
            conn.execute("DELETE FROM pgsync.link WHERE local_list_id = %s", [local_list_id])
            purged = 0
            if purge:
                # Faces first: a face whose dossier went missing (a write that bypassed the
                # foreign keys) would otherwise survive and collide with the next copy.
                conn.execute("DELETE FROM public.dossier_face WHERE dossier_list_id = %s", [local_list_id])
                purged = conn.execute(
                    "DELETE FROM public.dossier WHERE dossier_list_id = %s", [local_list_id]
                ).rowcount
        if leader is not None:
            cleanup_orphan_slots(conn, config)  # other links' leftovers, now that the Leader answers
        return {
            "local_list": local_list_id,
            "remote_list": link["remote_list_id"],
            "leader_reachable": leader is not None,
            "slot_dropped": slot_dropped,
            "purged_dossiers": purged,
        }


def _record_orphan(conn: pg.Connection, slot_name: str, leader_url: str, leader_id: str) -> None:
    conn.execute(
        "INSERT INTO pgsync.orphan_slot (slot_name, leader_url, leader_id) VALUES (%s, %s, %s) "
        "ON CONFLICT (slot_name) DO NOTHING",
        [slot_name, leader_url, leader_id],
    )


def cleanup_orphan_slots(conn: pg.Connection, config: Config) -> list[str]:
    """Drop, on their Leaders, the slots of links detached while the Leader was down.

    A name that a live link uses again (attached anew since) is never dropped.
    """
    conn.execute("DELETE FROM pgsync.orphan_slot o USING pgsync.link k WHERE k.slot_name = o.slot_name")
    dropped = []
    for orphan in conn.execute("SELECT * FROM pgsync.orphan_slot ORDER BY detached_at").fetchall():
        try:
            with LeaderClient(orphan["leader_url"], config.sync_token) as leader:
                leader.unregister(orphan["slot_name"])
        except PgsyncError as exc:
            conn.execute(
                "UPDATE pgsync.orphan_slot SET last_error = %s WHERE slot_name = %s",
                [str(exc), orphan["slot_name"]],
            )
            continue
        conn.execute("DELETE FROM pgsync.orphan_slot WHERE slot_name = %s", [orphan["slot_name"]])
        dropped.append(orphan["slot_name"])
    return dropped


def repair(
    config: Config,
    local_list_id: int,
    *,
    timeout_s: float = DEFAULT_COPY_TIMEOUT_S,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Copy a replica afresh from its Leader list: for a diverged replica (see verify) or a
    link whose slot was lost. The Leader is authoritative, so local rows are replaced.

    Refused, with nothing changed, unless the Leader is reachable and accepts this node.
    """
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        require_role(conn, "subscriber", "repair")
        link = get_link(conn, local_list_id)
        if link is None:
            raise PreconditionFailed(f"list {local_list_id} is not a replica", code="not_a_replica")
    request = AttachRequest(link["remote_list_id"], link["leader_url"], local_list_id, link["schedule"])
    with LeaderClient(request.leader_url, config.sync_token) as leader:
        _check_leader(leader.facts(), config, leader.shown_url)
    detach(config, local_list_id, purge=True)
    try:
        return attach(config, request, timeout_s=timeout_s, on_progress=on_progress)
    except PgsyncError as exc:
        raise type(exc)(
            f"{exc}; list {local_list_id} was emptied and is not attached: run "
            f"pgsync-dossier attach --remote-list {request.remote_list_id} --remote-url URL "
            f"--local-list {local_list_id}",
            code=exc.code,
        ) from None

"""attach / detach / repair: the state machine of one replica list within its group.

Every step is idempotent and progress is recorded in the catalog, so running a command again
after a crash (or twice) converges to one healthy link, or to none. Refusals happen before
anything is written, so a refused attach leaves nothing behind on either side.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from pgsync_dossier import (
    catalog,
    copier,
    enrollment,
    faults,
    groups,
    leader_install,
    leader_web,
    pg,
    schema_skew,
    subscriber,
)
from pgsync_dossier.catalog import Group, Link, LinkState
from pgsync_dossier.compare import Repair
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import has_password, is_web_address, mask_conninfo
from pgsync_dossier.copier import CopyResult, Progress
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable, UsageError, error_for
from pgsync_dossier.leader_client import LeaderClient, LeaderFacts, LeaderList, Login, with_tls
from pgsync_dossier.results import AttachResult, DetachResult, LinkResult, RepairResult
from pgsync_dossier.session import Session, subscriber_session
from pgsync_dossier.sync import GroupOutcome, sync_group

log = logging.getLogger(__name__)
R = TypeVar("R", bound=LinkResult)

#: How long detach waits for the barrier that brings a kept list up to date.
DETACH_BARRIER_S = 30.0
#: How long attach and repair wait for a sync of the group that is already running.
LOCK_WAIT_S = 300.0


@dataclass(frozen=True)
class AttachRequest:
    remote_list_id: int
    leader_url: str
    local_list_id: int
    schedule: str | None = None
    #: other upstreams of the same list (a second relay, the Leader itself): the group's, in
    #: the order tick tries them when its upstream stays unreachable (fallback.py)
    fallback_urls: tuple[str, ...] = ()


def _validate_fallback(url: str) -> None:
    if is_web_address(url) or has_password(url):
        raise UsageError(
            f"invalid fallback URL {mask_conninfo(url)!r}: give its PostgreSQL URL without a password "
            "(this node logs in with the sync token), e.g. postgresql://leader.example.org:5432/dossiers",
            code="invalid_url",
        )
    _validate_url(url)


def _validate_url(url: str) -> None:
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        params = {}
    if not url.strip() or not params:
        raise UsageError(
            f"invalid Leader URL {mask_conninfo(url)!r}: give the Leader's web address, e.g. "
            "http://leader.example.org:8800, or its PostgreSQL URL, e.g. "
            "postgresql://leader.example.org:5432/dossiers",
            code="invalid_url",
        )


def _leader_endpoint(config: Config, leader_url: str, deadline: Deadline) -> str:
    """The Leader's PostgreSQL URL: asked of its web address, or the URL given, checked."""
    if is_web_address(leader_url):
        leader_url = leader_web.resolve(
            config, leader_url, deadline.at_most(leader_web.DEFAULT_TIMEOUT_S).remaining()
        )
    _validate_url(leader_url)
    return leader_url


def _require_leader(facts: LeaderFacts, leader: LeaderClient) -> None:
    """A Leader, or a relay: it serves the lists it replicates as a Leader serves its own."""
    if facts.role not in ("leader", "relay"):
        raise PreconditionFailed(
            f"{leader.shown_url} is a {facts.role}, not a Leader: attach to the Leader", code="not_a_leader"
        )


def leader_lists(config: Config, leader_url: str) -> list[LeaderList]:
    """The lists an attach to this Leader may replicate (the web page's picker). Only reads:
    through the sync token's enrollment login, or the URL's own, so a Subscriber that has
    not enrolled yet may look before its first attach enrolls it."""
    endpoint = _leader_endpoint(config, leader_url, Deadline(leader_web.DEFAULT_TIMEOUT_S))
    login = Login("url") if has_password(endpoint) else Login.enrollment(config.sync_token)
    with LeaderClient(with_tls(endpoint, config.leader_sslrootcert), login) as leader:
        _require_leader(leader.facts(), leader)
        return leader.lists()


def check_upstream(s: Session, facts: LeaderFacts, leader: LeaderClient) -> None:
    """What a Leader or relay must agree on with this Subscriber before it streams from it."""
    config = s.config
    _require_leader(facts, leader)
    # A relay checked its Leader's token and face model at its own attach.
    upstream = "Leader" if facts.role == "leader" else "relay"
    if not enrollment.same_token(s.conn, s.config.sync_token, facts, leader.token_proven):
        raise PreconditionFailed(
            f"the sync token differs from the {upstream}'s ({facts.node_name}): "
            f"use the {upstream}'s sync_token on this Subscriber",
            code="token_mismatch",
        )
    if facts.face_model != config.face_model:
        raise PreconditionFailed(
            f"the face models differ: the {upstream} ({facts.node_name}) uses {facts.face_model!r}, "
            f"this Subscriber {config.face_model!r}; both must use the same neural network",
            code="face_model_mismatch",
        )
    skewed = schema_skew.mismatch(s.conn, leader, facts.node_name)
    if skewed is not None:
        raise PreconditionFailed(skewed.removeprefix("paused: "), code="schema_mismatch")


def _busy(local_list_id: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"another attach, detach or repair of list {local_list_id} is in progress: wait for it to finish",
        code="busy",
    )


def attach(
    config: Config,
    request: AttachRequest,
    *,
    timeout_s: float = copier.COPY_TIMEOUT_S,
    on_progress: Progress | None = None,
    defer_first_sync: bool = False,
) -> AttachResult:
    """Make the local list a replica. With `defer_first_sync`, return as soon as the link
    exists (state 'attaching') and leave the copy to the caller (the HTTP API runs it in the
    background); otherwise, with the Leader's sync_at_creation, copy now and reach a barrier."""
    deadline = Deadline(timeout_s)
    for url in request.fallback_urls:
        _validate_fallback(url)
    request = dataclasses.replace(request, leader_url=_leader_endpoint(config, request.leader_url, deadline))
    with subscriber_session(config, "attach") as s:
        groups.cleanup_orphans(s)
        if not pg.try_advisory_lock(s.conn, "list", request.local_list_id):
            raise _busy(request.local_list_id)
        existing = _check_local(s.conn, request)
        if s.node.role == "relay" and request.local_list_id != request.remote_list_id:
            raise PreconditionFailed(
                f"this node is a relay, which keeps its Leader's list ids: attach Leader list "
                f"{request.remote_list_id} into a local list {request.remote_list_id} "
                f"(INSERT INTO dossier_list (id, name) VALUES ({request.remote_list_id}, ...)), not "
                f"{request.local_list_id}",
                code="relay_list_id",
            )
        leader = s.leaders.get(request.leader_url)
        facts = leader.facts()
        check_upstream(s, facts, leader)
        if request.remote_list_id not in leader.lists_info([request.remote_list_id]):
            # A relay shows only the lists it replicates (under their Leader's ids).
            raise PreconditionFailed(
                f"list {request.remote_list_id} does not exist on the Leader ({facts.node_name})"
                if facts.role == "leader"
                else f"the relay {facts.node_name} replicates no list {request.remote_list_id} of its "
                "Leader: attach a list it replicates, or attach to its Leader",
                code="leader_list_not_found",
            )
        origin = origin_of(leader, facts, request.remote_list_id)
        twin = catalog.link_for_remote(
            s.conn, facts.leader_id, request.remote_list_id
        ) or catalog.link_for_origin(s.conn, origin, request.remote_list_id)
        if twin is not None and twin.local_list_id != request.local_list_id:
            raise PreconditionFailed(
                f"Leader list {request.remote_list_id} is already replicated into local list "
                f"{twin.local_list_id} of this Subscriber (directly or through a relay); a Leader list "
                "has one replica per Subscriber",
                code="leader_list_already_replicated",
            )
        group = _locked_group(s, request, facts, existing, deadline)
        if request.fallback_urls:
            catalog.set_fallback_urls(s.conn, group.id, list(request.fallback_urls))
        try:
            return _attach_in_group(
                s, request, facts, origin, existing, group, leader, deadline, on_progress, defer_first_sync
            )
        finally:
            groups.unlock(s.conn, group)


def _locked_group(
    s: Session, request: AttachRequest, facts: LeaderFacts, existing: Link | None, deadline: Deadline
) -> Group:
    """The link's group (made when it is the first of its kind), with its lock held, so no
    detach can drop it between here and the link's first sync."""
    while True:
        if existing is not None:
            group = catalog.group(s.conn, existing.group_id)
        else:
            group = catalog.find_or_make_group(
                s.conn,
                tag=s.node.node_tag,
                leader_id=facts.leader_id,
                leader_url=request.leader_url,
                leader_node_name=facts.node_name,
                schedule=request.schedule,
                leader_schedule=facts.sync_schedule,
            )
        assert group is not None
        groups.lock_waiting(s.conn, group, deadline.at_most(LOCK_WAIT_S))
        if catalog.group(s.conn, group.id) is not None:
            return group
        groups.unlock(s.conn, group)  # its last list was detached meanwhile: make it anew


def _attach_in_group(
    s: Session,
    request: AttachRequest,
    facts: LeaderFacts,
    origin: str,
    existing: Link | None,
    group: Group,
    leader: LeaderClient,
    deadline: Deadline,
    on_progress: Progress | None,
    defer_first_sync: bool,
) -> AttachResult:
    try:
        if existing is None:
            _record_link(s.conn, request, facts, origin, group)
            faults.point("attach.link_recorded")
        groups.ensure_stream(s, group, leader)
    except BaseException:
        if existing is None:  # only what this call created is undone; a resumed link stays
            _undo_attach(s, group, request.local_list_id, leader)
        raise
    link = catalog.link_for_list(s.conn, request.local_list_id)
    assert link is not None
    if not link.needs_copy:
        return _link_result(AttachResult, s, link, group, facts, created=False, synced=False)
    if not facts.sync_at_creation or defer_first_sync:
        return _link_result(AttachResult, s, link, group, facts, created=existing is None, synced=False)
    outcome = sync_group(s, group, "creation", deadline, on_progress, work_s=None)
    if outcome.status != "synced":
        raise _failed_first_sync(outcome, request.local_list_id)
    link = catalog.link_for_list(s.conn, request.local_list_id)
    assert link is not None
    copy = outcome.copies.get(link.local_list_id)
    return _link_result(AttachResult, s, link, group, facts, created=existing is None, synced=True, copy=copy)


def _failed_first_sync(outcome: GroupOutcome, local_list_id: int) -> PgsyncError:
    message = (
        f"list {local_list_id} is attached but its first sync failed: {outcome.error}; "
        "the next attach, sync or tick finishes it"
    )
    return error_for(outcome.code)(message, code=outcome.code)


def _check_local(conn: pg.Connection, request: AttachRequest) -> Link | None:
    """The local preconditions; returns the link of an earlier attempt at the same attach."""
    target = request.local_list_id
    if not conn.execute(pg.query("local_list_exists", "links.sql"), {"list": target}).fetchone():
        raise PreconditionFailed(
            f"local list {target} does not exist on this Subscriber: create it first",
            code="local_list_not_found",
        )
    existing = catalog.link_for_list(conn, target)
    if existing is not None:
        group = catalog.group(conn, existing.group_id)
        assert group is not None
        if (existing.remote_list_id, group.leader_url) != (request.remote_list_id, request.leader_url):
            raise PreconditionFailed(
                f"list {target} is already a replica of list {existing.remote_list_id} on "
                f"{group.leader_shown}: detach it first (pgsync-dossier detach {target})",
                code="already_replica",
            )
        return existing
    _refuse_non_empty(conn, target)
    return None


def _refuse_non_empty(conn: pg.Connection, list_id: int) -> None:
    counts = catalog.list_counts(conn, [list_id])[list_id]
    dossiers, faces = int(counts["dossiers"]), int(counts["faces"])
    if dossiers or faces:
        # Faces without dossiers only exist after writes that bypassed the foreign keys.
        contents = f"{dossiers} dossiers" if dossiers else f"{faces} faces without dossiers"
        raise PreconditionFailed(
            f"synchronization canceled: watch list {list_id} already contains {contents}; it must be empty",
            code="list_not_empty",
        )


def origin_of(leader: LeaderClient, facts: LeaderFacts, remote_list_id: int) -> str:
    """The identity of the Leader a list comes from: the upstream's own, or, on a relay, its
    Leader's (a Leader too old to say serves its own lists)."""
    origins = leader.list_origins([remote_list_id])
    return (origins or {}).get(remote_list_id) or facts.leader_id


def _record_link(
    conn: pg.Connection, request: AttachRequest, facts: LeaderFacts, origin: str, group: Group
) -> None:
    """Mark the list as a replica; from the commit on, local writes to it are refused.

    The list row is locked and touched first: a local insert that checked the guard before
    this commit waits on that lock (the guard takes FOR SHARE) and then sees the link.
    """
    with conn.transaction():
        conn.execute(pg.query("lock_local_list", "links.sql"), {"list": request.local_list_id})
        _refuse_non_empty(conn, request.local_list_id)
        try:
            catalog.insert_link(
                conn, request.local_list_id, request.remote_list_id, facts.leader_id, group.id, origin
            )
        except psycopg.errors.UniqueViolation:
            raise PreconditionFailed(
                f"Leader list {request.remote_list_id} was just attached to another local list of "
                "this Subscriber; a Leader list has one replica per Subscriber",
                code="leader_list_already_replicated",
            ) from None


def _undo_attach(s: Session, group: Group, local_list_id: int, leader: LeaderClient) -> None:
    """Roll a failed fresh attach back so nothing is left on either side (the caller holds the
    group's lock)."""
    catalog.delete_link(s.conn, local_list_id)
    if groups.links_of(s.conn, group.id):
        return
    try:
        groups.drop(s, group, leader)
    except (PgsyncError, psycopg.Error) as exc:
        log.warning("could not drop the group %s while undoing attach: %s", group.name, exc)
    catalog.delete_group(s.conn, group)


def _link_result(
    kind: type[R],
    s: Session,
    link: Link,
    group: Group,
    facts: LeaderFacts,
    *,
    created: bool,
    synced: bool,
    copy: CopyResult | None = None,
    fixed: Repair | None = None,
) -> R:
    """What attach and repair report. After a copy or a repair, its own row counts are the
    list's (at its snapshot): counting the list again would read it all from disk."""
    if copy is not None:
        dossiers, faces = copy.dossiers, copy.faces
    elif fixed is not None:
        dossiers, faces = fixed.dossiers, fixed.faces
    else:
        counts = catalog.list_counts(s.conn, [link.local_list_id])[link.local_list_id]
        dossiers, faces = int(counts["dossiers"]), int(counts["faces"])
    return kind(
        local_list=link.local_list_id,
        remote_list=link.remote_list_id,
        leader=facts.node_name,
        group=group.name,
        state=link.state,
        created=created,
        synced=synced,
        first_sync_pending=link.needs_copy,
        dossiers=dossiers,
        faces=faces,
    )


def detach(
    config: Config, local_list_id: int, purge: bool = False, barrier_s: float = DETACH_BARRIER_S
) -> DetachResult:
    """End replication of a list; it becomes an ordinary writable list (its rows kept, or
    purged). With the Leader up: narrow the group's filter, reach a barrier (so the kept rows
    are current), then unmap. With it down: unmap now; the filter is narrowed (or the group's
    slot dropped) once the Leader answers again."""
    with subscriber_session(config, "detach") as s:
        link = catalog.link_for_list(s.conn, local_list_id)
        if link is None:
            raise PreconditionFailed(
                f"list {local_list_id} is not a replica: there is nothing to detach", code="not_a_replica"
            )
        if not pg.try_advisory_lock(s.conn, "list", local_list_id):
            raise _busy(local_list_id)
        _refuse_if_relayed(s, local_list_id)
        group = catalog.group(s.conn, link.group_id)
        assert group is not None
        if not groups.lock(s.conn, group):
            raise PreconditionFailed(
                f"a sync of list {local_list_id}'s group is running: detach it when the sync is done",
                code="busy",
            )
        try:
            return _locked_detach(s, link, group, purge, barrier_s)
        finally:
            groups.unlock(s.conn, group)


def _refuse_if_relayed(s: Session, local_list_id: int) -> None:
    """On a relay: a list its downstream Subscribers replicate stays a replica. Detached, it
    would become a writable list of the relay's own, streamed on to replicas that follow the
    Leader (a purge would empty them)."""
    if s.node.role != "relay":
        return
    downstream = sorted(
        {
            group.subscriber_node
            for group in leader_install.registered_groups(s.conn)
            if local_list_id in group.lists
        }
    )
    if downstream:
        raise PreconditionFailed(
            f"list {local_list_id} is replicated from this relay by {', '.join(downstream)}: detach it "
            "there first (pgsync-dossier status --published shows who)",
            code="relay_list_published",
        )


def _locked_detach(
    s: Session, link: Link, group: Group, purge: bool, barrier_s: float = DETACH_BARRIER_S
) -> DetachResult:
    local = link.local_list_id
    catalog.set_link_state(s.conn, local, LinkState.DETACHING)
    leader: LeaderClient | None = None
    try:
        leader = groups.reach(s, group)
    except (ServerUnreachable, PreconditionFailed) as exc:
        log.warning("the Leader is unavailable (%s): it is cleaned up when it answers", exc)
    others = [other for other in groups.links_of(s.conn, group.id) if other.local_list_id != local]
    slot_dropped = False
    caught_up = False
    if leader is not None:
        try:
            deadline = Deadline(barrier_s)
            if others:
                groups.publish(s, group, leader, sorted(o.remote_list_id for o in others))
                faults.point("detach.narrowed")
                # A Leader transaction that wrote into the list before the narrowing and
                # commits later is still published with the old filter: the barrier must
                # come after it, or its rows arrive while (or after) the list is purged.
                leader.wait_xacts_ended(deadline)
            _barrier(s, group, leader, deadline)
            caught_up = True
        except PgsyncError as exc:
            log.warning("list %s: detaching without a final barrier (%s)", local, exc)
    in_transit: list[str] = []
    if purge and leader is not None and others and not caught_up:
        in_transit = _moved_within_group(s.conn, leader, local, [o.remote_list_id for o in others])
    if link.legacy_subscription is not None:
        groups.retire_legacy(s, link, leader)
    if not others:
        slot_dropped = groups.drop(s, group, leader)
        faults.point("detach.group_dropped")
    with s.conn.transaction():
        catalog.delete_link(s.conn, local)
        if not others:
            catalog.delete_group(s.conn, group)
        purged = _purge(s.conn, local, keep=in_transit) if purge else 0
    if leader is not None:
        groups.cleanup_orphans(s)  # other groups' leftovers, now that the Leader answers
    return DetachResult(
        local_list=local,
        remote_list=link.remote_list_id,
        leader_reachable=leader is not None,
        slot_dropped=slot_dropped or (leader is not None and bool(others)),
        purged_dossiers=purged,
        kept_in_transit=len(in_transit),
        caught_up=caught_up,
    )


def finish_interrupted_detaches(s: Session) -> list[int]:
    """Detach the lists whose detach died half-way (state `detaching`): the Leader's filter
    may no longer name them, so they would drift from their Leader lists while still mapped,
    and a later copy in their group would put them back in the filter with a gap. Their rows
    are kept (a purge is done only when asked again). Lists a running detach holds are left
    to it. Returns the lists detached."""
    finished = []
    for link in catalog.links(s.conn):
        if link.state != LinkState.DETACHING or not pg.try_advisory_lock(s.conn, "list", link.local_list_id):
            continue
        try:
            group = catalog.group(s.conn, link.group_id)
            if group is None or not groups.lock(s.conn, group):
                continue
            try:
                _locked_detach(s, link, group, purge=False)
            finally:
                groups.unlock(s.conn, group)
            log.warning("list %s: an interrupted detach was finished; its rows are kept", link.local_list_id)
            finished.append(link.local_list_id)
        finally:
            pg.advisory_unlock(s.conn, "list", link.local_list_id)
    return finished


def _barrier(s: Session, group: Group, leader: LeaderClient, deadline: Deadline) -> None:
    """Bring the group up to the Leader's present (a window when windowed), best effort."""
    if subscriber.subscription(s.conn, group.name) is None:
        return
    try:
        groups.catch_up(s, group, leader, deadline)
    finally:
        groups.settle(s.conn, group)


def _purge(conn: pg.Connection, local_list_id: int, keep: list[str]) -> int:
    """Delete a detached list's rows but the dossiers in `keep` (and their faces), in replica
    mode: one statement, so both tables are purged at one snapshot. Two statements let a
    stream's transaction that committed between them keep its faces and lose its dossiers
    (the soak found such faces)."""
    subscriber.write_as_apply(conn)
    # A list of a million dossiers takes longer than the connection's statement timeout; the
    # caller's transaction ends the exemption.
    conn.execute(pg.query("no_statement_timeout_here", "links.sql"))
    return conn.execute(pg.query("purge_list", "links.sql"), {"list": local_list_id, "keep": keep}).rowcount


def _moved_within_group(
    conn: pg.Connection, leader: LeaderClient, local_list_id: int, others: list[int]
) -> list[str]:
    """The list's dossiers that the Leader has moved into another list of the group, when the
    stream could not catch up before the detach: their moves may still be on their way, as
    UPDATEs that find nothing to move if the purge deletes the rows first. They are kept;
    the move takes them over."""
    ids = [
        str(row["id"])
        for row in conn.execute(pg.query("list_dossier_ids", "links.sql"), {"list": local_list_id})
    ]
    return leader.dossiers_in_lists(ids, others) if ids else []


def repair(
    config: Config,
    local_list_id: int,
    *,
    timeout_s: float = copier.COPY_TIMEOUT_S,
    on_progress: Progress | None = None,
) -> RepairResult:
    """Bring a diverged replica back to its Leader list in place (compare.repair_list): the
    group's stream pauses, the list is compared with the Leader's at one snapshot chunk by
    chunk, and what differs is fixed in one local transaction, so the list never goes empty
    and the cost follows the differences. Refused, with nothing changed, unless the Leader is
    reachable and accepts this node. A list whose copy is owed is copied instead."""
    with subscriber_session(config, "repair") as s:
        link = catalog.link_for_list(s.conn, local_list_id)
        if link is None:
            raise PreconditionFailed(f"list {local_list_id} is not a replica", code="not_a_replica")
        group, facts, outcome = repair_locked(
            s, link, Deadline(timeout_s), "repair requested", on_progress, work_s=None
        )
        if outcome.status != "synced":
            raise error_for(outcome.code)(
                f"the repair of list {local_list_id} did not finish: {outcome.error}; the list keeps "
                "its rows, and the next sync or tick finishes the repair",
                code=outcome.code,
            )
        link = catalog.link_for_list(s.conn, local_list_id)
        assert link is not None
        fixed = outcome.repairs.get(local_list_id)
        copy = outcome.copies.get(local_list_id)
        result = _link_result(
            RepairResult, s, link, group, facts, created=False, synced=True, copy=copy, fixed=fixed
        )
        if fixed is None:
            return result
        return dataclasses.replace(result, differences=fixed.before)


def repair_locked(
    s: Session,
    link: Link,
    deadline: Deadline,
    note: str,
    on_progress: Progress | None = None,
    work_s: float | None = copier.COPY_TIMEOUT_S,
) -> tuple[Group, LeaderFacts, GroupOutcome]:
    """The one way into a repair, for `repair`, `verify --repair` and a scheduled
    verification: the list's lock (refused as busy while another command holds it), the
    Leader's checks, the group's lock; then the list owes a repair (or, when its copy is still
    owed, the copy runs instead) and its group syncs, which makes it. `note` says who asked;
    `work_s` is as for sync_group (`repair`, whose --timeout is the repair's, passes None)."""
    if not pg.try_advisory_lock(s.conn, "list", link.local_list_id):
        raise _busy(link.local_list_id)
    try:
        # Read again under the lock: a detach may have ended since the caller read it (verify
        # compares without the lock).
        current = catalog.link_for_list(s.conn, link.local_list_id)
        group = catalog.group(s.conn, current.group_id) if current is not None else None
        if current is None or group is None:
            raise PreconditionFailed(f"list {link.local_list_id} is not a replica", code="not_a_replica")
        link = current
        leader = s.leaders.get(group.leader_url)
        facts = leader.facts()
        check_upstream(s, facts, leader)
        groups.lock_waiting(s.conn, group, deadline.at_most(LOCK_WAIT_S))
        try:
            if not link.needs_copy:
                catalog.set_link_state(s.conn, link.local_list_id, LinkState.REPAIRING, note)
            return group, facts, sync_group(s, group, "repair", deadline, on_progress, work_s=work_s)
        finally:
            groups.unlock(s.conn, group)
    finally:
        # verify repairs several lists in one session: each list's lock ends with its repair.
        pg.advisory_unlock(s.conn, "list", link.local_list_id)


def set_leader_available(config: Config, local_list_id: int, available: bool) -> None:
    """An operator's word on the Leader of list T: unavailable (local deletes allowed) or back."""
    with subscriber_session(config, "leader-unavailable") as s:
        link = catalog.link_for_list(s.conn, local_list_id)
        if link is None:
            raise PreconditionFailed(f"list {local_list_id} is not a replica", code="not_a_replica")
        catalog.set_leader_available(s.conn, link.leader_id, available)

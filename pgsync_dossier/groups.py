"""A group's stream: making it, pausing it for a copy, copying new lists into it, narrowing it,
and dropping it (docs/architecture.md, "How it works"; docs/design-notes.md, "Version 2").

The catalog (which lists a group maps) is the truth; the Leader's publication filter and the
subscription are made to follow it. Every step is idempotent, so a command killed anywhere is
finished by the next attach, sync or tick.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pgsync_dossier import backlog, catalog, compare, copier, faults, pg, schema_skew, subscriber
from pgsync_dossier.backlog import BacklogChoice
from pgsync_dossier.catalog import Group, Link, LinkState
from pgsync_dossier.compare import Repair
from pgsync_dossier.copier import CopyResult, Progress
from pgsync_dossier.deadline import Deadline, poll
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable
from pgsync_dossier.group_window import stream_facts
from pgsync_dossier.leader_client import GroupSlot, LeaderClient, LeaderFacts
from pgsync_dossier.session import Session
from pgsync_dossier.window import face_model_message, should_stream

log = logging.getLogger(__name__)

#: How long a group waits, paused, for its workers to stop before a copy.
PAUSE_TIMEOUT_S = 60.0
#: How long a command waits for a stopped stream's position, on its way out.
STOP_WAIT_S = 5.0


def links_of(conn: pg.Connection, group_id: int) -> list[Link]:
    return [link for link in catalog.links(conn) if link.group_id == group_id]


def settle(
    conn: pg.Connection, group: Group, *, window_open: bool = False, models_match: bool | None = True
) -> None:
    """Enable or disable the group's subscription as should_stream() decides. A stream about
    to run forgets where it last stopped first: from then on it moves the slot itself, and a
    command that dies before it records the new stop must not leave a stale position behind
    (the next sync would take the slot's progress for someone else's, see slot_trouble).

    models_match None: the Leader could not be asked just now, so its last word stands (a
    link paused by apply_leader_facts keeps the stream closed)."""
    fresh = catalog.group(conn, group.id) or group
    if models_match is None:
        models_match = not any(link.state == LinkState.PAUSED for link in links_of(conn, group.id))
    enabled = should_stream(
        stream_facts(fresh, window_open=window_open, models_match=models_match), datetime.now(UTC)
    )
    if enabled and fresh.stopped_at_lsn is not None:
        catalog.set_stopped_at(conn, group.id, None)
    subscriber.set_enabled(conn, group.name, enabled)


def lock(conn: pg.Connection, group: Group) -> bool:
    """The group's lock: one sync, copy, detach or probe of a group at a time, across processes.
    A session may take it again (an attach holding it runs the group's first sync)."""
    return pg.try_advisory_lock(conn, "group", group.id)


def lock_waiting(conn: pg.Connection, group: Group, deadline: Deadline) -> None:
    """Take the group's lock, waiting for a sync that holds it (within the deadline)."""
    if poll(lambda: True if lock(conn, group) else None, deadline) is None:
        raise PreconditionFailed(
            f"the group {group.name} stayed busy (a sync or another attach) for {deadline.seconds:g}s: "
            "try again when it is done",
            code="busy",
        )


def unlock(conn: pg.Connection, group: Group) -> None:
    pg.advisory_unlock(conn, "group", group.id)


def ensure_stream(s: Session, group: Group, leader: LeaderClient) -> None:
    """The group's publication and registration on the Leader, and its subscription (with its
    slot) here. A new subscription starts disabled: its lists are copied before it streams."""
    mapped = sorted(link.remote_list_id for link in links_of(s.conn, group.id))
    if not mapped:
        return
    catalog.ensure_heartbeat(s.conn, group)
    existing = subscriber.subscription(s.conn, group.name)
    if existing is not None:
        if existing["relations"] == 0:  # pg_upgrade from before 17 keeps no subscribed tables
            log.info("group %s: subscription made again on its slot (it had no tables)", group.name)
            subscriber.resubscribe(s.conn, group.name, leader.url, leader.login, leader.version)
        elif not subscriber.has_passfile(s.conn, group.name) or subscriber.passfile_elsewhere(
            s.conn, group.name, existing["oid"]
        ):  # a restore without it, an upgraded server in a new data directory
            subscriber.set_connection(s.conn, group.name, leader.url, leader.login)
        return
    subscriber.refuse_without_capacity(s.conn)
    publish(s, group, leader, mapped)
    faults.point("group.registered")
    leader.drop_stale_slot(group.name)  # left by a command killed inside CREATE SUBSCRIPTION
    subscriber.create_subscription(
        s.conn,
        group.name,
        leader.url,
        leader.login,
        enabled=False,
        leader_version=leader.version,
    )
    log.debug("group %s: subscription and slot created", group.name)
    faults.point("group.subscribed")


@dataclass(frozen=True)
class Copied:
    link: Link
    result: CopyResult


def copy_pending(
    s: Session, group: Group, leader: LeaderClient, deadline: Deadline, progress: Progress | None = None
) -> list[Copied]:
    """Copy every list of the group that needs it (new, interrupted, under repair, or a
    version-1 link), one at a time (docs/architecture.md, "How it works", Attach): widen the filter,
    wait for the Leader's transactions that were in flight at that moment, pause the stream,
    copy at one snapshot. The caller resumes the stream afterwards: it replays from
    where it paused, which is before the copy's snapshot.

    In a group with other lists the stream first applies everything up to the widening (see
    _quiesce), and their recent rows are settled after the copy (compare.settle_neighbours):
    dossiers moved between the copied list and the others meanwhile are kept."""
    done: list[Copied] = []
    try:
        for link in [link for link in links_of(s.conn, group.id) if link.needs_copy]:
            mapped = sorted(other.remote_list_id for other in links_of(s.conn, group.id))
            neighbours = _quiesce(s, group, leader, link, deadline, widen_to=mapped)
            # Alone in its group, a list is copied in one go: nobody waits on the pause.
            total = 0 if neighbours is None else copier.rows_of(leader, link.remote_list_id)
            pieces = [None] if neighbours is None else copier.parts(total)
            results: list[CopyResult] = []
            # Every part goes the way the list's state decides now (direct: it is empty), not
            # the way the stream's inserts between parts would make it look.
            merge = copier.has_rows(s.conn, link.local_list_id) if len(pieces) > 1 else None
            for part in pieces:
                if part is not None and part.number > 1:
                    # The other lists' changes of the last part's pause are applied first.
                    catch_up(s, group, leader, deadline)
                _pause_for(s, group, link, deadline)
                if part is None or part.number == 1:
                    if link.legacy_subscription is not None:
                        # A version-1 stream of this list stops for good before the group writes it.
                        subscriber.pause(s.conn, link.legacy_subscription, deadline.at_most(PAUSE_TIMEOUT_S))
                    log.debug("group %s: paused for list %s", group.name, link.local_list_id)
                    faults.point("copy.paused")
                    if neighbours is None:
                        publish(s, group, leader, mapped)
                        leader.wait_xacts_ended(deadline)
                        log.debug("group %s: filter widened, in-flight transactions ended", group.name)
                    faults.point("copy.widened")
                    catalog.set_link_state(s.conn, link.local_list_id, LinkState.COPYING)
                results.append(
                    copier.copy_list(
                        leader,
                        s.config.database_url,
                        link.remote_list_id,
                        link.local_list_id,
                        group,
                        deadline,
                        _after(results, progress, total),
                        on_expected=functools.partial(catalog.set_copy_expected, s.conn, link.local_list_id),
                        merge=merge,
                        part=part,
                    )
                )
                if part is not None:
                    log.info("list %s: part %s of %s copied", link.local_list_id, part.number, part.of)
            result = copier.CopyResult.of(results)
            if neighbours is not None:
                faults.point("copy.written")
                # The list's own recent rows too: a dossier moved out of it before its part's
                # snapshot and back in after it is in no part, and its UPDATE finds no row.
                settled = compare.Neighbours(
                    {**neighbours.lists, link.remote_list_id: link.local_list_id}, neighbours.since
                )
                compare.settle_neighbours(
                    leader, s.config.database_url, link.local_list_id, group, settled, deadline
                )
            faults.point("copy.copied")
            if link.legacy_subscription is not None:
                retire_legacy(s, link, leader)
            catalog.set_link_state(s.conn, link.local_list_id, LinkState.READY)
            catalog.keep_settle_since(s.conn, link.local_list_id, None)
            log.info(
                "list %s: copied %s dossiers and %s faces (%s)",
                link.local_list_id,
                result.dossiers,
                result.faces,
                result.path,
            )
            done.append(Copied(link, result))
        if any(copied.result.changed for copied in done):
            subscriber.analyze_tables(s.conn)  # once for every list this call wrote
    except PgsyncError as exc:
        failed = catalog.group(s.conn, group.id)
        if failed is not None and failed.copying_list_id is not None:
            catalog.set_link_state(s.conn, failed.copying_list_id, LinkState.ATTACHING, str(exc))
        raise
    finally:
        catalog.set_copy_pause(s.conn, group.id, None, None)
    return done


def _after(done: list[CopyResult], progress: Progress | None, total: int) -> Progress | None:
    """A part's progress as the whole copy's (`total` rows, as counted before the first part):
    the rows of the parts before it come first. A copy in one go reports its own."""
    if progress is None or total == 0:
        return progress
    before = sum(part.dossiers + part.faces for part in done)
    return lambda rows, expected: progress(before + rows, max(total, before + expected))


def repair_pending(s: Session, group: Group, leader: LeaderClient, deadline: Deadline) -> dict[int, Repair]:
    """Repair in place every list of the group that owes it (a repair asked for, or after a
    lost slot), one at a time: pause the stream, compare the list with the Leader's at one
    snapshot, fix what differs in one local transaction (with the group's other lists'
    recent rows, as a copy settles them). The caller resumes the stream."""
    done: dict[int, Repair] = {}
    try:
        for link in [link for link in links_of(s.conn, group.id) if link.needs_repair]:
            neighbours = _quiesce(s, group, leader, link, deadline)
            _pause_for(s, group, link, deadline)
            faults.point("repair.paused")
            result = compare.repair_list(
                leader,
                s.config.database_url,
                link.remote_list_id,
                link.local_list_id,
                group,
                deadline,
                neighbours,
            )
            faults.point("repair.fixed")
            catalog.set_link_state(s.conn, link.local_list_id, LinkState.READY)
            catalog.keep_settle_since(s.conn, link.local_list_id, None)
            log.info("list %s: repaired in place (%s)", link.local_list_id, result.before)
            done[link.local_list_id] = result
    finally:
        catalog.set_copy_pause(s.conn, group.id, None, None)
    return done


def _pause_for(s: Session, group: Group, link: Link, deadline: Deadline) -> None:
    """Pause the group's stream for a copy or repair of `link`'s list, for its deadline at most."""
    until = datetime.now(UTC) + timedelta(seconds=deadline.remaining())
    catalog.set_copy_pause(s.conn, group.id, link.local_list_id, until)
    subscriber.pause(s.conn, group.name, deadline.at_most(PAUSE_TIMEOUT_S))


def _quiesce(
    s: Session,
    group: Group,
    leader: LeaderClient,
    link: Link,
    deadline: Deadline,
    widen_to: list[int] | None = None,
) -> compare.Neighbours | None:
    """Before a copy or repair of `link`'s list in a group with other lists: bring the stream
    to a point after which every move between the lists is an UPDATE the copy can settle.

    Read the Leader's WAL position, widen the filter (a copy), wait for the transactions then
    in flight to end, and let the stream apply everything up to a heartbeat after that. Moves
    into the list decoded before the widening (as DELETEs from the other list) are applied
    before the copy writes the row, not replayed after it; moves written after the position
    read are settled after the copy (compare.settle_neighbours). A stream that was stopped
    (between windows, or by a command that died) catches up here too. None: no other list,
    so no move between lists to keep."""
    others = {
        o.remote_list_id: o.local_list_id
        for o in links_of(s.conn, group.id)
        if o.local_list_id != link.local_list_id
    }
    if not others:
        return None
    # A copy killed after writing its rows settles, when finished, from its first attempt's
    # position: the moves made since then may be among the changes its stream applied.
    since = catalog.keep_settle_since(s.conn, link.local_list_id, leader.version_floor())
    assert since is not None
    if widen_to is not None:
        publish(s, group, leader, widen_to)
    leader.wait_xacts_ended(deadline)
    seq = catch_up(s, group, leader, deadline)
    log.debug("group %s: caught up to %s before list %s", group.name, seq, link.local_list_id)
    return compare.Neighbours(others, since)


def catch_up(s: Session, group: Group, leader: LeaderClient, deadline: Deadline) -> int:
    """Open the group's stream until it has applied what the Leader committed before now (a
    heartbeat barrier), and leave it open; returns the heartbeat. The caller holds the group,
    so a pause left by a copy or repair that died is ended first."""
    fresh = catalog.group(s.conn, group.id) or group
    if fresh.copying_list_id is not None:
        catalog.set_copy_pause(s.conn, group.id, None, None)
    seq = leader.heartbeat(group.name)
    settle(s.conn, fresh, window_open=True)
    subscriber.wait_for_barrier(s.conn, group.name, seq, deadline, leader)
    return seq


def slot_trouble(conn: pg.Connection, group: Group, slot: GroupSlot | None) -> str | None:
    """Why the group's stream cannot simply resume from its slot, or None.

    'missing': no slot (a Leader failover that did not keep it, a DBA); 'lost': the Leader
    dropped the WAL it needed (max_slot_wal_keep_size); 'consumed': the slot moved on while
    this stream was stopped, so someone else streamed from it (a cloned Subscriber, a
    hand-made subscription) and this replica never saw those changes. A stream running here
    now (a window opened by hand, or by a command that died) may have moved it itself: no
    verdict then, and the stop position is forgotten."""
    if slot is None or not slot.registered:
        return None  # the group is new, or its publication was never made: ensure_stream's
    if not slot.slot_exists:
        return "missing"
    if slot.wal_status == "lost":
        return "lost"
    if group.stopped_at_lsn is None:
        return None
    sub = subscriber.subscription(conn, group.name)
    if sub is not None and (sub["enabled"] or subscriber.workers(conn, group.name)):
        catalog.set_stopped_at(conn, group.id, None)
        return None
    return "consumed" if int(slot.confirmed_lsn or 0) > group.stopped_at_lsn else None


_TROUBLE = {
    "missing": "the Leader had no slot for this group (a failover that did not keep it, or a manual drop)",
    "lost": "the Leader lost this group's slot (max_slot_wal_keep_size: the WAL it needed is gone)",
    "consumed": "someone else streamed from this group's slot while it was stopped (a cloned "
    "Subscriber, or a subscription made by hand on its slot)",
}


def heal(
    s: Session, group: Group, leader: LeaderClient, trouble: str, deadline: Deadline, note: str | None = None
) -> str:
    """Put the stream back on its feet: a new slot when it was lost or missing, and every list
    of the group owes an in-place repair (the changes in between never arrived). Returns what
    was done, for the log, the status and the sync history. 'backlog' (with its `note`): the
    slot is moved on to the present on purpose, its backlog costing more to replay than the
    lists to repair (replay_or_repair)."""
    subscriber.pause(s.conn, group.name, deadline.at_most(PAUSE_TIMEOUT_S))
    if trouble in ("missing", "lost", "backlog"):
        leader.recreate_slot(group.name)
    if note is None:
        done = (
            "slot recreated, lists repaired in place" if trouble != "consumed" else "lists repaired in place"
        )
        note = f"{_TROUBLE[trouble]}: {done}"
    catalog.set_group_links_repairing(s.conn, group.id, note)
    catalog.set_stopped_at(s.conn, group.id, None)
    log.warning("group %s: %s", group.name, note)
    return note


def replay_or_repair(
    s: Session, group: Group, leader: LeaderClient, slot: GroupSlot | None, deadline: Deadline
) -> BacklogChoice | None:
    """Before the stream resumes: when its backlog is large, replay it or repair the lists in
    place instead, whichever costs less (backlog.py); the repair is set up here (heal) and
    done by repair_pending. None when the backlog is too small to weigh, or when a walsender
    is streaming it now: a live stream that is behind (the Leader bulk-loading other tables)
    is catching up, and moving its slot on would repair every list for nothing."""
    behind = slot.lag_bytes if slot is not None and slot.slot_exists and not slot.active else None
    if not backlog.worth_estimating(behind):
        return None
    assert behind is not None
    links = [link for link in links_of(s.conn, group.id) if link.state == LinkState.READY]
    if not links:
        return None
    choice = backlog.choose(behind, subscriber.lists_bytes(s.conn, [link.local_list_id for link in links]))
    log.info("group %s: %s", group.name, choice.note)
    if choice.repair:
        heal(s, group, leader, "backlog", deadline, choice.note)
    return choice


def record_stop(s: Session, group: Group, leader: LeaderClient | None, deadline: Deadline) -> None:
    """Remember where the slot stands now that this stream is stopped (its workers gone), so
    that a stream someone else consumes meanwhile is noticed before it runs again. A stream
    left running forgets it: it moves the slot itself."""
    sub = subscriber.subscription(s.conn, group.name)
    if sub is None or sub["enabled"] or leader is None:
        catalog.set_stopped_at(s.conn, group.id, None)
        return
    try:
        deadline = deadline.at_most(STOP_WAIT_S)  # a worker stuck on a lock: no verdict, move on
        subscriber.pause(s.conn, group.name, deadline)
        # The walsender takes the worker's last feedback after the worker is gone: read the
        # position once the slot is released.
        released = poll(lambda: _released(leader, group.name), deadline)
    except PgsyncError as exc:
        log.debug("group %s: stop position unknown (%s)", group.name, exc)
        catalog.set_stopped_at(s.conn, group.id, None)
        return
    slot = released[0] if released else None
    catalog.set_stopped_at(s.conn, group.id, slot.confirmed_lsn if slot and slot.slot_exists else None)


def _released(leader: LeaderClient, name: str) -> tuple[GroupSlot | None] | None:
    """The group's slot once no walsender holds it (in a tuple: None inside when the Leader
    shows no such group, which ends the wait too)."""
    slot = leader.groups_status([name]).get(name)
    return None if slot is not None and slot.active else (slot,)


def retire_legacy(s: Session, link: Link, leader: LeaderClient | None) -> None:
    """Drop a version-1 link's own subscription, its slot and its per-list publication."""
    name = link.legacy_subscription
    assert name is not None
    slot_dropped = subscriber.drop_subscription(s.conn, name, leader_reachable=leader is not None)
    if leader is not None:
        leader.drop_group(name)
    elif not slot_dropped:
        catalog.record_orphan(s.conn, name, _group_url(s, link), link.leader_id)
    catalog.clear_legacy_subscription(s.conn, link.local_list_id)


def _group_url(s: Session, link: Link) -> str:
    group = catalog.group(s.conn, link.group_id)
    assert group is not None
    return group.leader_url


def narrow(s: Session, group: Group, leader: LeaderClient, registered: list[int] | None) -> None:
    """Make the Leader's filter name no list the group no longer maps (lists detached while
    the Leader was down). Widening is copy_pending's: a list enters the filter only there."""
    mapped = sorted(link.remote_list_id for link in links_of(s.conn, group.id))
    if registered is not None and mapped and set(registered) - set(mapped):
        publish(s, group, leader, mapped)


#: Why a group's lists are copied again in place (groups.publish).
COLUMNS_ADDED = "the nodes have a column in common that was not published: copied again in place"


def apply_leader_facts(
    s: Session, group: Group, leader: LeaderClient, facts: LeaderFacts
) -> tuple[str, str] | None:
    """Record the Leader's facts on the group and pause or resume its lists by them: a ready,
    paused or repairing list is paused with the current message (a repairing one owes its
    repair), a paused one is ready again once the stream may run (or repairing, when it owes
    a repair). Returns the pause as (code, message), None when it may stream. Sync and the
    scheduler's probe both decide this here, so they never disagree."""
    catalog.set_leader_facts(s.conn, group.id, facts.sync_schedule, facts.node_name, facts.face_model)
    pause = pause_reason(s, leader, facts)
    if pause is not None:
        catalog.pause_group_links(s.conn, group.id, pause[1])
    else:
        catalog.resume_group_links(s.conn, group.id)
    return pause


def pause_reason(s: Session, leader: LeaderClient, facts: LeaderFacts) -> tuple[str, str] | None:
    """Why the group's stream must stay closed, as (code, message): the face models differ,
    or the schemas differ beyond what a column list absorbs. None: it may stream."""
    if facts.face_model != s.config.face_model:
        return "paused", face_model_message(facts.node_name, facts.face_model, s.config.face_model)
    skewed = schema_skew.mismatch(s.conn, leader, facts.node_name)
    return None if skewed is None else ("schema_mismatch", skewed)


def publish(s: Session, group: Group, leader: LeaderClient, lists: list[int]) -> None:
    """The group's publication on the Leader: these lists, and the columns this Subscriber has
    in common with the Leader (schema_skew.py), so that a column only the Leader has is never
    published.

    A column published from now on was never carried by the stream, and what the slot holds
    was decoded without it (a row it cannot insert, when the column is required here). So the
    stream pauses, its lists owe a copy in place (copy_pending, which writes only the rows that
    differ) and its slot starts anew after the change: the copies, taken later, hold
    everything the old slot held."""
    wanted = schema_skew.stream_columns(s.conn, leader)
    adds = wanted is not None and _adds_columns(leader.group_columns(group.name), wanted)
    if adds:
        subscriber.pause(s.conn, group.name, Deadline(PAUSE_TIMEOUT_S))
        catalog.set_group_links_state(
            s.conn,
            group.id,
            LinkState.ATTACHING,
            COLUMNS_ADDED,
            from_states=(LinkState.READY, LinkState.REPAIRING),
        )
    leader.set_group_lists(group.name, s.node.node_name, lists, wanted)
    if adds:
        leader.recreate_slot(group.name)
        catalog.set_stopped_at(s.conn, group.id, None)
        log.info(
            "group %s: publishes %s from now on: new slot, lists copied again in place", group.name, wanted
        )


def _adds_columns(published: dict[str, list[str] | None], wanted: dict[str, list[str]]) -> bool:
    """Whether `wanted` publishes a column the group's publication does not (one that has no
    column list publishes every column; a new group publishes nothing yet)."""
    return any(
        published.get(table) is not None and bool(set(columns) - set(published[table] or []))
        for table, columns in wanted.items()
    )


def columns_behind(s: Session, group: Group, leader: LeaderClient) -> bool:
    """Whether the group's publication names other columns than the two nodes now have in
    common (a node migrated since): refresh_columns then publishes them."""
    wanted = schema_skew.stream_columns(s.conn, leader)
    if wanted is None or not links_of(s.conn, group.id):
        return False
    published = leader.group_columns(group.name)
    return not all(published.get(table) == columns for table, columns in wanted.items())


def refresh_columns(s: Session, group: Group, leader: LeaderClient) -> None:
    """Publish the columns in common now, when they changed since the publication was made."""
    if columns_behind(s, group, leader):
        publish(s, group, leader, sorted(link.remote_list_id for link in links_of(s.conn, group.id)))


def drop(s: Session, group: Group, leader: LeaderClient | None) -> bool:
    """Drop the group's subscription, and on the Leader its slot and publication. With the
    Leader down, the slot is recorded as an orphan and dropped when it answers. True when
    nothing is left on the Leader."""
    slot_dropped = subscriber.drop_subscription(s.conn, group.name, leader_reachable=leader is not None)
    subscriber.remove_passfile(s.conn, group.name)
    cleaned = False
    if leader is not None:
        try:
            leader.drop_group(group.name)
            cleaned = True
        except PgsyncError as exc:
            log.warning("the Leader could not drop %s now (%s): it will be dropped later", group.name, exc)
    if not cleaned:
        catalog.record_orphan(s.conn, group.name, group.leader_url, group.leader_id)
    log.debug("group %s dropped (slot dropped with the subscription: %s)", group.name, slot_dropped)
    return cleaned


def cleanup_orphans(s: Session) -> list[str]:
    """Drop, on their Leaders, the slots and publications of groups dropped while the Leader
    was down. A name that a live group uses again is never dropped."""
    catalog.forget_revived_orphans(s.conn)
    dropped = []
    for orphan in catalog.orphans(s.conn):
        try:
            s.leaders.get(orphan["leader_url"]).drop_group(orphan["slot_name"])
        except PgsyncError as exc:
            catalog.set_orphan_error(s.conn, orphan["slot_name"], str(exc))
            continue
        catalog.delete_orphan(s.conn, orphan["slot_name"])
        dropped.append(orphan["slot_name"])
    return dropped


def reach(s: Session, group: Group) -> LeaderClient:
    """The group's Leader; records whether it answered (the guard trigger's authority)."""
    try:
        leader = s.leaders.get(group.leader_url)
    except ServerUnreachable:
        catalog.set_leader_available(s.conn, group.leader_id, False)
        raise
    catalog.set_leader_available(s.conn, group.leader_id, True)
    return leader

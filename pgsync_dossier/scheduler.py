"""Which groups are due, one scheduler step (`tick`), and the long-running loop (`run`).

Missed occurrences are coalesced: a group is due when at least one occurrence has passed
since its last successful sync (or its creation), and one sync then covers all of them. A
failed sync does not move that mark, so the next tick retries it. Groups of different
Leaders are synced concurrently, each Leader on its own connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg

from pgsync_dossier import catalog, fallback, groups, subscriber, verify
from pgsync_dossier.catalog import Group
from pgsync_dossier.config import Config
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import OperationFailed, PgsyncError, PreconditionFailed, ServerUnreachable
from pgsync_dossier.group_window import group_schedule
from pgsync_dossier.leader_client import GroupSlot
from pgsync_dossier.links import finish_interrupted_detaches
from pgsync_dossier.session import Session, subscriber_session
from pgsync_dossier.sync import GroupOutcome, Reason, SyncOutcome, sync_group

log = logging.getLogger(__name__)

DEFAULT_TICK_TIMEOUT_S = 300.0
#: The daemon wakes at least this often, to notice new links and probe the Leaders.
MAX_SLEEP_S = 60.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def due_occurrence(s: Session, group: Group, now: datetime) -> datetime | None:
    schedule = group_schedule(group)
    if schedule is None:
        return None
    return schedule.due(catalog.last_synced_mark(s.conn, group.id), now)


def _per_leader(
    config: Config,
    command: str,
    reason: Reason,
    chosen: list[Group],
    work: Callable[[Session, Group], GroupOutcome | None],
) -> list[GroupOutcome]:
    """Run `work` on each group: the groups of one Leader one after the other on one session,
    different Leaders at the same time (each on its own connections)."""
    by_leader: dict[str, list[Group]] = {}
    for group in chosen:
        by_leader.setdefault(group.leader_id, []).append(group)

    def one_leader(batch: list[Group]) -> list[GroupOutcome]:
        outcomes = []
        with subscriber_session(config, command) as s:
            for group in batch:
                # One group's trouble must not stop the others; its failure is reported with it.
                try:
                    outcome = work(s, group)
                except (PgsyncError, psycopg.Error) as exc:
                    log.warning("group %s: %s", group.name, exc)
                    code = exc.code if isinstance(exc, PgsyncError) else "unreachable"
                    lists = [link.local_list_id for link in groups.links_of(s.conn, group.id)]
                    outcome = GroupOutcome(
                        group, lists, reason, "failed", error=str(exc).splitlines()[0], code=code
                    )
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    batches = list(by_leader.values())
    if len(batches) <= 1:
        return [outcome for batch in batches for outcome in one_leader(batch)]
    with ThreadPoolExecutor(max_workers=len(batches), thread_name_prefix="pgsync-leader") as pool:
        return [outcome for result in pool.map(one_leader, batches) for outcome in result]


def sync_lists(
    config: Config, local_list_ids: list[int] | None, reason: Reason, timeout_s: float
) -> list[SyncOutcome]:
    """`sync`: the groups of the requested lists (every group when None), now. The deadline
    covers the whole command."""
    deadline = Deadline(timeout_s)
    with subscriber_session(config, "sync") as s:
        groups.cleanup_orphans(s)
        finish_interrupted_detaches(s)
        links = catalog.links(s.conn)
        if local_list_ids is not None:
            known = {link.local_list_id for link in links}
            missing = [str(list_id) for list_id in local_list_ids if list_id not in known]
            if missing:
                raise PreconditionFailed(
                    f"not a replica on this Subscriber: list {', '.join(missing)}", code="not_a_replica"
                )
        wanted = {
            link.group_id for link in links if local_list_ids is None or link.local_list_id in local_list_ids
        }
        chosen = [group for group in catalog.groups(s.conn) if group.id in wanted]
    outcomes = _per_leader(
        config, "sync", reason, chosen, lambda s, group: sync_group(s, group, reason, deadline)
    )
    return [
        outcome
        for group_outcome in outcomes
        for outcome in group_outcome.per_list()
        if local_list_ids is None or outcome.local_list in local_list_ids
    ]


def tick(
    config: Config,
    *,
    startup: bool = False,
    timeout_s: float = DEFAULT_TICK_TIMEOUT_S,
    clock: Clock = utc_now,
) -> list[SyncOutcome]:
    """One scheduler step: sync what is due (and copies still owed), probe the rest, prune."""
    deadline = Deadline(timeout_s)
    with subscriber_session(config, "tick") as s:
        groups.cleanup_orphans(s)
        finish_interrupted_detaches(s)
        chosen = catalog.groups(s.conn)
    outcomes = _per_leader(
        config,
        "tick",
        "startup" if startup else "schedule",
        chosen,
        lambda s, group: _step_then_verify(s, group, startup, deadline, clock()),
    )
    with subscriber_session(config, "tick") as s:
        catalog.prune_history(s.conn)
    return [outcome for group_outcome in outcomes for outcome in group_outcome.per_list()]


def _step_then_verify(
    s: Session, group: Group, startup: bool, deadline: Deadline, now: datetime
) -> GroupOutcome | None:
    """The group's step, then its scheduled verification when one is due and the group is in
    order (verify.scheduled): a verification's failure is logged and recorded, never the tick's.
    A windowed group is verified only right after a window's sync: its verification syncs
    first, and must not open a window of its own."""
    outcome = _step(s, group, startup, deadline, now)
    windowed = group_schedule(group) is not None
    if (outcome is not None and outcome.status == "synced") or (outcome is None and not windowed):
        fresh = catalog.group(s.conn, group.id)
        try:
            if fresh is not None:
                verify.scheduled(s, fresh, deadline)
        except PgsyncError as exc:
            log.warning("group %s: its scheduled verification failed: %s", group.name, exc)
    return outcome


def _step(s: Session, group: Group, startup: bool, deadline: Deadline, now: datetime) -> GroupOutcome | None:
    if fallback.due(group, now):
        if not groups.lock(s.conn, group):
            return None
        try:
            moved = fallback.move_if_lost(s, group)
        finally:
            groups.unlock(s.conn, group)
        fresh = catalog.group(s.conn, group.id)
        if moved is not None and fresh is not None:
            return sync_group(s, fresh, "heal", deadline)  # the new stream, the lists repaired there
    if startup:
        return sync_group(s, group, "startup", deadline)
    occurrence = due_occurrence(s, group, now)
    if occurrence is not None:
        return sync_group(s, group, "schedule", deadline, window_at=occurrence)
    links = groups.links_of(s.conn, group.id)
    if group.effective_schedule is None:
        if any(link.needs_copy for link in links):
            return sync_group(s, group, "creation", deadline)  # an attach that did not finish
        if any(link.needs_repair for link in links):
            return sync_group(s, group, "repair", deadline)  # a repair or heal that did not finish
    if not groups.lock(s.conn, group):
        return None  # a sync in another process owns the group (and its window) right now
    try:
        trouble = _probe(s, group)
    finally:
        groups.unlock(s.conn, group)
    if trouble is not None:  # a lost or missing slot is healed now, windows or not
        return sync_group(s, group, "heal", deadline)
    resumed_owing = any(link.needs_repair for link in groups.links_of(s.conn, group.id))
    if group.effective_schedule is None and resumed_owing:
        return sync_group(s, group, "repair", deadline)  # a paused list resumed owing its repair
    return None


def _probe(s: Session, group: Group) -> str | None:
    """Between syncs: record whether the Leader is reachable, keep the stream state right, and
    say what is wrong with the group's slot, if anything (groups.slot_trouble).

    A windowed group must be disabled here (a crash may have left a window open); a
    continuous one must be enabled unless its face model differs; a copy pause left by a
    crashed copy ends (nobody holds the group, so nobody is copying). The caller holds the
    group's lock.
    """
    if group.copying_list_id is not None:
        catalog.set_copy_pause(s.conn, group.id, None, None)
    leader = None
    trouble = None
    try:
        leader = groups.reach(s, group)
        facts = leader.facts()
        slot = leader.groups_status([group.name]).get(group.name)
        trouble = groups.slot_trouble(s.conn, group, slot)
        _sample_lag(s, group, slot)
        if trouble is None and s.node.role == "relay" and group_schedule(group) is None:
            # Downstream Subscribers learn the Leader time this relay has reached from the
            # heartbeats it applies (pgsync.leader_time): a continuous stream gets one at each
            # tick, not only at a sync.
            leader.heartbeat(group.name)
    except ServerUnreachable:
        facts = None
    except PgsyncError as exc:
        log.warning("group %s: %s", group.name, exc)
        facts = None
    models_match: bool | None = None  # None: the Leader was not asked, its last word stands
    if facts is not None and leader is not None:
        try:
            models_match = groups.apply_leader_facts(s, group, leader, facts) is None
            if models_match and groups.columns_behind(s, group, leader):
                trouble = trouble or "columns"  # a node migrated: the sync publishes them
        except PgsyncError as exc:  # the states stay as they are: no pause is lifted unseen
            log.warning("group %s: %s", group.name, exc)
    sub = subscriber.subscription(s.conn, group.name)
    if sub is not None and sub["relations"] == 0:
        trouble = trouble or "untabled"  # pg_upgrade from before 17: the sync makes it again
    fresh = catalog.group(s.conn, group.id) or group
    groups.settle(s.conn, fresh, models_match=models_match)
    if trouble is None and fresh.stopped_at_lsn is None:
        groups.record_stop(s, fresh, leader, Deadline(groups.STOP_WAIT_S))
    return trouble


def _sample_lag(s: Session, group: Group, slot: GroupSlot | None) -> None:
    """The lag history the web page charts: the lag as `status` would show it now."""
    lag = subscriber.replica_lag(slot, subscriber.heartbeats(s.conn).get(group.name))
    catalog.record_lag_sample(s.conn, group.id, slot.lag_bytes if slot else None, lag)


def next_wake(config: Config, clock: Clock = utc_now) -> datetime:
    """When the daemon should look again: the next occurrence of any group, a minute away at most."""
    now = clock()
    wake = now + timedelta(seconds=MAX_SLEEP_S)
    with subscriber_session(config, "run") as s:
        for group in catalog.groups(s.conn):
            schedule = group_schedule(group)
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
    first, because a sync always settles its group's subscription on its way out.
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

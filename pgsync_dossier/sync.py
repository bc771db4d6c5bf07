"""One sync of one group: copies still owed, then the heartbeat barrier, inside a window when
the group is windowed.

A sync returns once everything the Leader committed before it started is visible here, in
every list of the group. In windowed mode the subscription is enabled only for the sync and
disabled again whatever happens, so a failed or interrupted window never stays open.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from pgsync_dossier import catalog, copier, faults, groups, subscriber
from pgsync_dossier.catalog import Group
from pgsync_dossier.compare import Repair
from pgsync_dossier.copier import CopyResult, Progress
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PgsyncError, ServerUnreachable
from pgsync_dossier.leader_client import LeaderClient
from pgsync_dossier.session import Session

log = logging.getLogger(__name__)

Reason = Literal["schedule", "startup", "creation", "manual", "repair", "heal", "verify"]
Status = Literal["synced", "failed", "paused", "busy", "skipped"]


class SyncOutcomeJson(TypedDict):
    """A SyncOutcome's JSON keys, in this order (docs/cli.md)."""

    local_list: int
    reason: str
    status: Status
    group: str | None
    barrier_seq: int | None
    error: str | None
    code: str | None
    started_at: datetime | None
    finished_at: datetime | None
    copied: bool


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did, reported once per list of the group."""

    local_list: int
    reason: str
    status: Status
    group: str | None = None
    barrier_seq: int | None = None
    error: str | None = None
    #: the error's machine-readable code (e.g. "unreachable"), None when synced
    code: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    copied: bool = False

    def as_dict(self) -> SyncOutcomeJson:
        """The outcome as `sync --json`, `tick --json` and the API's sync answer show it."""
        return SyncOutcomeJson(
            local_list=self.local_list,
            reason=self.reason,
            status=self.status,
            group=self.group,
            barrier_seq=self.barrier_seq,
            error=self.error,
            code=self.code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            copied=self.copied,
        )


@dataclass(frozen=True)
class GroupOutcome:
    group: Group
    lists: list[int]
    reason: str
    status: Status
    barrier_seq: int | None = None
    error: str | None = None
    code: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: the lists this sync copied (a new list, an interrupted copy, an upgrade), with what it copied
    copies: dict[int, CopyResult] = field(default_factory=dict)
    #: the lists this sync repaired in place, with what it found
    repairs: dict[int, Repair] = field(default_factory=dict)
    #: what a heal found and did (a lost or missing slot, a stream consumed elsewhere)
    healed: str | None = None

    def per_list(self) -> list[SyncOutcome]:
        return [
            SyncOutcome(
                local,
                self.reason,
                self.status,
                self.group.name,
                self.barrier_seq,
                self.error,
                self.code,
                self.started_at,
                self.finished_at,
                local in self.copies,
            )
            for local in self.lists
        ]


def sync_group(
    s: Session,
    group: Group,
    reason: Reason,
    deadline: Deadline,
    progress: Progress | None = None,
    window_at: datetime | None = None,
    work_s: float | None = copier.COPY_TIMEOUT_S,
) -> GroupOutcome:
    """Sync one group unless another process holds it. `window_at` is the schedule occurrence
    this sync serves (scheduled syncs only). A copy or repair the sync finds owed gets `work_s`
    of its own, not counted against `deadline` (Deadline.not_counting); None counts it, for a
    command whose deadline is the copy's (`attach`, `repair`)."""
    lists = [link.local_list_id for link in groups.links_of(s.conn, group.id)]
    if not groups.lock(s.conn, group):
        return GroupOutcome(
            group, lists, reason, "busy", error="another sync of this group is running", code="busy"
        )
    try:
        return _locked_sync(s, group, lists, reason, deadline, progress, window_at, work_s)
    finally:
        groups.unlock(s.conn, group)


def _locked_sync(
    s: Session,
    group: Group,
    lists: list[int],
    reason: Reason,
    deadline: Deadline,
    progress: Progress | None,
    window_at: datetime | None,
    work_s: float | None,
) -> GroupOutcome:
    run = catalog.start_run(s.conn, group.id, reason, window_at)
    seq: int | None = None
    copies: dict[int, CopyResult] = {}
    repairs: dict[int, Repair] = {}
    healed: str | None = None
    models_match: bool | None = None  # None: the Leader was not asked, its last word stands
    leader: LeaderClient | None = None

    def finish(status: Status, error: str | None = None, code: str | None = None) -> GroupOutcome:
        finished = catalog.finish_run(s.conn, run, status == "synced", seq, error)
        catalog.set_group_error(s.conn, group.id, error)
        if status != "synced" and code is None:
            code = status
        return GroupOutcome(
            group, lists, reason, status, seq, error, code, run.started_at, finished, copies, repairs, healed
        )

    try:
        leader = groups.reach(s, group)
        facts = leader.facts()
        if reason == "startup" and not facts.sync_at_startup:
            catalog.set_leader_facts(s.conn, group.id, facts.sync_schedule, facts.node_name, facts.face_model)
            catalog.forget_run(s.conn, run)
            return GroupOutcome(
                group, lists, reason, "skipped", error="the Leader's sync_at_startup is off", code="skipped"
            )
        paused = groups.apply_leader_facts(s, group, leader, facts)
        models_match = paused is None
        if paused is not None:  # the stream stays closed; the slot keeps what comes meanwhile
            code, message = paused
            return finish("paused", message, code if code != "paused" else None)
        groups.ensure_stream(s, group, leader)
        slot = leader.groups_status([group.name]).get(group.name)
        trouble = groups.slot_trouble(s.conn, catalog.group(s.conn, group.id) or group, slot)
        if trouble is not None:
            healed = groups.heal(s, group, leader, trouble, deadline)
        else:
            choice = groups.replay_or_repair(s, group, leader, slot, deadline)
            if choice is not None:
                catalog.set_run_note(s.conn, run, choice.note)
        subscriber.make_failover_ready(
            s.conn, group.name, leader.version, deadline.at_most(groups.PAUSE_TIMEOUT_S)
        )
        groups.refresh_columns(s, group, leader)
        with nullcontext(deadline) if work_s is None else deadline.not_counting(work_s) as work:
            copies = {
                done.link.local_list_id: done.result
                for done in groups.copy_pending(s, group, leader, work, progress)
            }
            repairs = groups.repair_pending(s, group, leader, work)
        if healed is not None and reason == "heal":
            catalog.set_run_note(s.conn, run, healed)
        elif healed is not None:  # found by another sync: a heal of its own in the history
            catalog.record_run(s.conn, group.id, "heal", True, healed)
        groups.narrow(s, group, leader, slot.lists if slot else None)
        seq = leader.heartbeat(group.name)
        groups.settle(s.conn, group, window_open=True)
        faults.point("sync.window_open")
        subscriber.wait_for_barrier(s.conn, group.name, seq, deadline, leader)
        log.debug("group %s: barrier %s reached", group.name, seq)
    except PgsyncError as exc:
        if isinstance(exc, ServerUnreachable):
            catalog.set_leader_available(s.conn, group.leader_id, False)
            s.leaders.forget(group.leader_url)
        log.warning("group %s: %s", group.name, exc)
        return finish("failed", str(exc), exc.code)
    finally:
        if subscriber.subscription(s.conn, group.name) is not None:
            # Close the window (or keep streaming, when continuous); never leave a copy pause.
            groups.settle(s.conn, group, window_open=False, models_match=models_match)
            groups.record_stop(s, group, leader, deadline)
    catalog.record_caught_up(s.conn, group.id)
    return finish("synced")

"""What a Leader's physical standby needs so that the Subscribers' streams survive a failover.

From PostgreSQL 17 a logical slot made with `failover` is kept in step on a standby that
synchronizes slots, and after a promotion the stream goes on from the new primary without a
copy (docs/design-notes.md, "Leader failover"). Four settings make that true, and a primary can see
each of them: the standby streams through a physical slot, sends hot-standby feedback, runs
a slot synchronization worker, and the primary's `synchronized_standby_slots` names its slot
(so no Subscriber is ever ahead of the standby). Each missing piece is a warning with its
fix, never a failure: a Leader without a standby works as before. Before 17 there is no
failover slot: after a failover `tick` recreates each group's slot and repairs in place.

The other way round, a slot that `synchronized_standby_slots` names but no standby streams
from stops every Subscriber stream with a failover slot (a promoted standby inherits the
setting): that is checked with or without standbys, and a sync that times out says it too
(stall.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from psycopg.rows import class_row, kwargs_row

from pgsync_dossier import pg

FAILOVER_SLOTS_SINCE = 170000
#: What pg_stat_activity.wait_event says of a walsender that waits for the slots of
#: synchronized_standby_slots to confirm (PostgreSQL 17+, WAIT_EVENT_WAIT_FOR_STANDBY_CONFIRMATION).
WAITS_FOR_STANDBY = "WaitForStandbyConfirmation"
#: Why a slot that synchronized_standby_slots names holds every logical stream back: the label
#: values of the Leader's pgsync_dossier_leader_standby_slot_blocking series.
BLOCKING_REASONS = ("missing", "not_physical", "inactive")


class StandbySlotRow(TypedDict):
    """A slot that synchronized_standby_slots names, with this server's view of it (the query
    standby_slots, or an element of pgsync.api_stream_stall's standby_slots)."""

    slot_name: str
    slot_exists: bool
    slot_type: str | None
    active: bool


@dataclass(frozen=True)
class PhysicalStandby:
    """A standby streaming from this primary, as the query physical_standbys reads it."""

    name: str | None
    address: str | None
    slot_name: str | None  # its physical slot; None: it streams without one
    feedback: bool  # whether that slot receives hot-standby feedback


@dataclass(frozen=True)
class StandbySlotBlocker:
    """A slot that synchronized_standby_slots names and that no standby confirms WAL through.

    A failover slot's walsender sends only WAL that every slot named there has confirmed, and
    PostgreSQL keeps waiting when one is missing, logical or unused (it only logs a warning).
    A promoted standby inherits the setting with its base backup, naming the old primary's
    standby or itself: then every stream with a failover slot stops at once, with no standby in sight.
    """

    slot: str
    reason: str  # one of BLOCKING_REASONS
    #: The other slots the setting names, for the fix that removes this one.
    others: tuple[str, ...]

    @property
    def what(self) -> str:
        return {
            "missing": "which does not exist",
            "not_physical": "which is a logical slot, not a standby's",
            "inactive": "which no standby streams from now",
        }[self.reason]

    @property
    def fix(self) -> str:
        keep = (
            f"ALTER SYSTEM SET synchronized_standby_slots = '{', '.join(self.others)}'"
            if self.others
            else "ALTER SYSTEM RESET synchronized_standby_slots"
        )
        remove = f"remove it ({keep}; SELECT pg_catalog.pg_reload_conf())"
        if self.reason == "missing":
            return f"{remove} or create the slot of the standby that should stream through it"
        if self.reason == "inactive":
            return (
                f"start the standby that streams through it (primary_slot_name = '{self.slot}') or {remove}"
            )
        return remove

    def warning(self) -> str:
        """As the Leader says it (setup, status)."""
        return (
            f"synchronized_standby_slots names the slot '{self.slot}', {self.what}: "
            f"every Subscriber stream with a failover slot waits for it; {self.fix}"
        )


def slot_blockers(named: Iterable[StandbySlotRow]) -> list[StandbySlotBlocker]:
    """From the rows of the query standby_slots (or pgsync.api_stream_stall's standby_slots):
    each named slot that holds the logical streams back, in the setting's order."""
    rows = list(named)
    found = []
    for row in rows:
        if not row["slot_exists"]:
            reason = "missing"
        elif row["slot_type"] != "physical":
            reason = "not_physical"
        elif not row["active"]:
            reason = "inactive"
        else:
            continue
        others = tuple(other["slot_name"] for other in rows if other["slot_name"] != row["slot_name"])
        found.append(StandbySlotBlocker(row["slot_name"], reason, others))
    return found


def standby_slots(conn: pg.Connection) -> list[StandbySlotRow]:
    """The slots synchronized_standby_slots names, with this server's view of each (none before 17)."""
    with conn.cursor(row_factory=kwargs_row(StandbySlotRow)) as cur:
        return cur.execute(pg.query("standby_slots", "standby.sql")).fetchall()


def standby_slot_blockers(conn: pg.Connection) -> list[StandbySlotBlocker]:
    return slot_blockers(standby_slots(conn))


def failover_warnings(conn: pg.Connection) -> list[str]:
    """One line per missing piece, each naming the setting and where to set it.

    The slots that synchronized_standby_slots names come first and are checked with or
    without standbys: a promoted standby has none yet, and it is then that a setting it
    inherited stops every stream.
    """
    named = standby_slots(conn)
    warnings = [blocker.warning() for blocker in slot_blockers(named)]
    with conn.cursor(row_factory=class_row(PhysicalStandby)) as cur:
        standbys = cur.execute(pg.query("physical_standbys", "standby.sql")).fetchall()
    if not standbys:
        return warnings
    if pg.server_version(conn) < FAILOVER_SLOTS_SINCE:
        return [
            *warnings,
            f"PostgreSQL {pg.server_version(conn) // 10000} keeps no logical slot across a failover: "
            "after one, tick recreates each group's slot and repairs its lists in place; "
            "PostgreSQL 17 or later on the Leader avoids that",
        ]
    synchronized = {row["slot_name"] for row in named}
    for standby in standbys:
        who = f"standby {standby.name or '(unnamed)'} at {standby.address or 'local socket'}"
        slot = standby.slot_name
        if slot is None:
            warnings.append(
                f"{who} streams without a replication slot: create one on the primary "
                "(SELECT pg_create_physical_replication_slot('NAME')) "
                "and set primary_slot_name on the standby"
            )
            continue
        if not standby.feedback:
            warnings.append(f"{who}: set hot_standby_feedback = on on the standby")
        if slot not in synchronized:
            warnings.append(
                f"{who}: synchronized_standby_slots does not name its slot {slot}: "
                f"ALTER SYSTEM SET synchronized_standby_slots = '{slot}' on the primary, then reload, "
                "so no Subscriber gets ahead of the standby"
            )
    workers = conn.execute(pg.query("slot_sync_workers", "standby.sql")).fetchone()
    if not workers or int(workers["n"]) == 0:
        warnings.append(
            "no standby synchronizes slots: set sync_replication_slots = on on the standby, "
            "with a dbname in its primary_conninfo"
        )
    return warnings

"""What a Leader's physical standby needs so that the Subscribers' streams survive a failover.

From PostgreSQL 17 a logical slot made with `failover` is kept in step on a standby that
synchronizes slots, and after a promotion the stream goes on from the new primary without a
copy (docs/design-notes.md, "Leader failover"). Four settings make that true, and a primary can see
each of them: the standby streams through a physical slot, sends hot-standby feedback, runs
a slot synchronization worker, and the primary's `synchronized_standby_slots` names its slot
(so no Subscriber is ever ahead of the standby). Each missing piece is a warning with its
fix, never a failure: a Leader without a standby works as before. Before 17 there is no
failover slot: after a failover `tick` recreates each group's slot and repairs in place.
"""

from __future__ import annotations

from pgsync_dossier import pg

FAILOVER_SLOTS_SINCE = 170000


def failover_warnings(conn: pg.Connection) -> list[str]:
    """One line per missing piece, each naming the setting and where to set it."""
    standbys = conn.execute(pg.query("physical_standbys")).fetchall()
    if not standbys:
        return []
    if pg.server_version(conn) < FAILOVER_SLOTS_SINCE:
        return [
            f"PostgreSQL {pg.server_version(conn) // 10000} keeps no logical slot across a failover: "
            "after one, tick recreates each group's slot and repairs its lists in place; "
            "PostgreSQL 17 or later on the Leader avoids that"
        ]
    warnings: list[str] = []
    named = conn.execute("SELECT pg_catalog.current_setting('synchronized_standby_slots') AS v").fetchone()
    synchronized = {s.strip().strip('"') for s in str(named["v"] if named else "").split(",") if s.strip()}
    for standby in standbys:
        who = f"standby {standby['name'] or '(unnamed)'} at {standby['address'] or 'local socket'}"
        slot = standby["slot_name"]
        if slot is None:
            warnings.append(
                f"{who} streams without a replication slot: create one on the primary "
                "(SELECT pg_create_physical_replication_slot('NAME')) "
                "and set primary_slot_name on the standby"
            )
            continue
        if not standby["feedback"]:
            warnings.append(f"{who}: set hot_standby_feedback = on on the standby")
        if slot not in synchronized:
            warnings.append(
                f"{who}: synchronized_standby_slots does not name its slot {slot}: "
                f"ALTER SYSTEM SET synchronized_standby_slots = '{slot}' on the primary, then reload, "
                "so no Subscriber gets ahead of the standby"
            )
    workers = conn.execute(pg.query("slot_sync_workers")).fetchone()
    if not workers or int(workers["n"]) == 0:
        warnings.append(
            "no standby synchronizes slots: set sync_replication_slots = on on the standby, "
            "with a dbname in its primary_conninfo"
        )
    return warnings

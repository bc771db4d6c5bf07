"""Why a stream stalls, as said from the rows PostgreSQL gives (no database): standby.py's
slot blockers and stall.py's reasons, each one line with its fix."""

from __future__ import annotations

from typing import Any

from pgsync_dossier import stall, standby


def _slot(
    name: str, exists: bool = True, slot_type: str | None = "physical", active: bool = True
) -> dict[str, Any]:
    return {
        "slot_name": name,
        "slot_exists": exists,
        "slot_type": slot_type if exists else None,
        "active": active,
    }


def test_each_slot_that_holds_the_streams_back_is_named_with_a_fix_that_keeps_the_others() -> None:
    rows = [
        _slot("hq_b"),
        _slot("gone", exists=False, active=False),
        _slot("idle", active=False),
        _slot("pgsync_x_g1", slot_type="logical"),
    ]
    blockers = standby.slot_blockers(rows)
    assert [(b.slot, b.reason) for b in blockers] == [
        ("gone", "missing"),
        ("idle", "inactive"),
        ("pgsync_x_g1", "not_physical"),
    ]
    assert {b.reason for b in blockers} <= set(standby.BLOCKING_REASONS)
    gone, idle, logical = (b.warning() for b in blockers)
    assert gone.startswith("synchronized_standby_slots names the slot 'gone', which does not exist: ")
    assert "every Subscriber stream with a failover slot waits for it" in gone
    assert "ALTER SYSTEM SET synchronized_standby_slots = 'hq_b, idle, pgsync_x_g1'" in gone
    assert "primary_slot_name = 'idle'" in idle
    assert "which is a logical slot, not a standby's" in logical
    assert all("\n" not in w for w in (gone, idle, logical))


def test_the_only_slot_named_is_removed_by_a_reset() -> None:
    (blocker,) = standby.slot_blockers([_slot("gone", exists=False)])
    assert "ALTER SYSTEM RESET synchronized_standby_slots; SELECT pg_catalog.pg_reload_conf()" in blocker.fix
    assert standby.slot_blockers([]) == [] and standby.slot_blockers([_slot("hq_b")]) == []


def test_the_leader_side_says_what_the_walsender_waits_for() -> None:
    waiting = {"wait_event": standby.WAITS_FOR_STANDBY, "standby_slots": [_slot("gone", exists=False)]}
    (reason,) = stall.leader_reasons(waiting)
    assert reason.startswith("the Leader's walsender waits for the standby slot 'gone' named in its ")
    assert "which does not exist; there, remove it (ALTER SYSTEM RESET" in reason
    idle = {"wait_event": "WalSenderWaitForWal", "standby_slots": [_slot("gone", exists=False)]}
    assert stall.leader_reasons(idle)[0].startswith("every failover-slot stream of the Leader waits for")
    lagging = {"wait_event": standby.WAITS_FOR_STANDBY, "standby_slots": [_slot("hq_b")]}
    (reason,) = stall.leader_reasons(lagging)
    assert "('hq_b') to confirm the WAL it sends" in reason
    assert stall.leader_reasons({"wait_event": None, "standby_slots": []}) == []


def _sub(**values: Any) -> dict[str, Any]:
    row = {
        "enabled": True,
        "worker_pid": 41,
        "wait_event_type": None,
        "wait_event": None,
        "blocked_by": None,
        "errors": 0,
    }
    return {**row, **values}


def test_the_subscriber_side_says_what_stops_its_apply_worker() -> None:
    assert "is gone" in stall.subscriber_reasons("g1", None, 0)[0]
    assert "is disabled" in stall.subscriber_reasons("g1", _sub(enabled=False, worker_pid=None), 0)[0]
    assert "no apply worker runs" in stall.subscriber_reasons("g1", _sub(worker_pid=None), 0)[0]
    (locked,) = stall.subscriber_reasons(
        "g1",
        _sub(wait_event_type="Lock", wait_event="transactionid", blocked_by=["7 (idle in transaction)"]),
        0,
    )
    assert locked == (
        "its apply worker (pid 41) waits for a lock (transactionid) held by pid 7 (idle in transaction) "
        "on the Subscriber: end that transaction"
    )
    assert stall.subscriber_reasons("g1", _sub(errors=5), 3) == [
        "its apply worker failed 2 times while waiting: see the Subscriber's server log"
    ]
    assert stall.subscriber_reasons("g1", _sub(errors=3), 3) == []


def test_the_timeout_message_is_unchanged_when_nothing_is_known() -> None:
    message = "the stream g1 did not catch up with the Leader within 90s (heartbeat seen 4, waiting for 7)"
    assert stall.timeout_message(message, []) == message
    assert stall.timeout_message(message, ["a", "b"]) == message + ": a; b"

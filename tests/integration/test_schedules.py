"""Sync windows on real clusters: disabled between windows, catching up exactly, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from pgsync_dossier import config as config_module
from pgsync_dossier import pg, scheduler
from pgsync_dossier.sync import SyncOutcome
from tests.harness import (
    NIGHTLY,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    group_names,
    list_rows,
    make_list,
    oracle_verdict,
    wait_for_same,
    wait_until,
    write_config,
)


def _windowed(sites: dict[str, Site], tmp_path: Path, schedule: str = NIGHTLY) -> Site:
    leader = sites["leader"]
    windowed = Site(
        leader.node, write_config(tmp_path / "wl.yaml", leader.node, "leader", sync_schedule=schedule)
    )
    windowed.ok("setup")
    return windowed


def _enabled(sub: Site) -> bool:
    return bool(sub.node.execute("SELECT subenabled FROM pg_subscription")[0]["subenabled"])


def _tick(sub: Site, at: datetime) -> list[SyncOutcome]:
    return scheduler.tick(config_module.load(sub.config_path), clock=lambda: at, timeout_s=60)


def test_windowed_link_is_disabled_between_windows_and_catches_up(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    assert attach(sub, leader, remote, local)["dossiers"] == 3  # sync_at_creation
    assert not _enabled(sub)
    add_dossiers(leader.node, remote, 2, prefix="meanwhile")
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET comment = 'edited' WHERE name = 'd0'")
    # Not a synchronisation: the scenario itself is a second outside any window, in which
    # nothing may flow (there is no event to wait for when nothing is meant to happen).
    time.sleep(1.0)
    assert len(list_rows(sub.node, local)[0]) == 3  # nothing flows outside a window
    assert not _enabled(sub)  # and the stream stayed closed all along
    assert not sub.node.execute("SELECT pid FROM pg_stat_subscription WHERE pid IS NOT NULL")
    found = oracle_verdict(leader, sub, [(remote, local)])  # all the Leader did since is still missing
    assert {
        (table, kind): found.count(table, kind)
        for table in ("dossier", "dossier_face")
        for kind in ("missing", "extra", "changed")
    } == {
        ("dossier", "missing"): 2,
        ("dossier", "extra"): 0,
        ("dossier", "changed"): 1,
        ("dossier_face", "missing"): 4,
        ("dossier_face", "extra"): 0,
        ("dossier_face", "changed"): 0,
    }, found.problems()

    now = datetime.now(UTC)
    assert _tick(sub, now) == [] and not _enabled(sub)  # the next 03:00 is still ahead
    outcomes = _tick(sub, now + timedelta(days=3))  # three missed nights: one sync
    assert [(o.reason, o.status) for o in outcomes] == [("schedule", "synced")]
    # verify=False: verify syncs, and what follows reads what the scheduled sync left.
    assert_converged(leader, sub, [(remote, local)], verify=False)
    assert not _enabled(sub)
    assert _tick(sub, now + timedelta(days=3)) == []  # not due twice

    rows = sub.ok("status", "--json").json()
    assert rows[0]["schedule"] == NIGHTLY and rows[0]["last_sync_ok"] is True
    assert rows[0]["next_sync"] is not None and rows[0]["enabled"] is False
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def test_a_windowed_slot_lets_go_of_the_wal_of_past_windows(sites: dict[str, Site], tmp_path: Path) -> None:
    """PostgreSQL moves a slot's restart point only at a running-transactions record (the
    Leader writes one at a checkpoint, and every 15 s while it is busy) that the Subscriber has
    confirmed. A window that closed before confirming what it applied would hold the WAL of
    every window on the Leader for good."""
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local)
    query = (
        "SELECT restart_lsn - '0/0' AS restart_lsn, confirmed_flush_lsn - '0/0' AS confirmed_flush_lsn "
        "FROM pg_replication_slots WHERE slot_type = 'logical'"
    )
    (before,) = leader.node.execute(query)
    for window in range(3):
        add_dossiers(leader.node, remote, 2, prefix=f"window {window} ")
        leader.node.execute("CHECKPOINT")  # a running-transactions record, as a busy Leader writes
        sub.ok("sync", str(local))
    (after,) = leader.node.execute(query)
    assert after["confirmed_flush_lsn"] > before["confirmed_flush_lsn"]
    assert after["restart_lsn"] > before["restart_lsn"]
    assert_converged(leader, sub, [(remote, local)])


def test_failed_window_is_retried_and_nothing_is_lost(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    add_dossiers(leader.node, remote, 4)
    later = datetime.now(UTC) + timedelta(days=1)
    leader.node.cluster.stop()
    try:
        outcomes = _tick(sub, later)
        assert [o.status for o in outcomes] == ["failed"] and "cannot reach" in (outcomes[0].error or "")
        assert not _enabled(sub)
        assert (
            sub.node.execute("SELECT leader_available FROM pgsync.sync_group")[0]["leader_available"] is False
        )
    finally:
        leader.node.cluster.start()
    add_dossiers(leader.node, remote, 1, prefix="after-restart")
    outcomes = _tick(sub, later)  # the failure did not consume the window
    assert [o.status for o in outcomes] == ["synced"]
    # verify=False: verify syncs, and the history below must hold the scheduled syncs only.
    assert_converged(leader, sub, [(remote, local)], verify=False)
    assert not _enabled(sub)
    runs = sub.node.execute("SELECT reason, ok FROM pgsync.sync_run ORDER BY id")
    assert [(r["reason"], r["ok"]) for r in runs] == [
        ("creation", True),
        ("schedule", False),
        ("schedule", True),
    ]
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def test_continuous_sync_is_a_barrier(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    for round_ in range(3):
        add_dossiers(leader.node, remote, 5, prefix=f"r{round_}-")
        result = sub.ok("sync", str(local), "--json").json()
        assert [r["status"] for r in result] == ["synced"]
        # No waiting: the barrier guarantees everything committed before it is here.
        assert_converged(leader, sub, [(remote, local)], verify=False)
    assert _enabled(sub)
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle
    assert sub.cli("sync").exit_code == 2
    missing = sub.cli("sync", "999")
    assert missing.exit_code == 3 and "not a replica" in missing.stderr


def test_overlapping_ticks_skip_a_busy_link(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    group_id = sub.node.execute("SELECT id FROM pgsync.sync_group")[0]["id"]
    with psycopg.connect(sub.node.url, autocommit=True, row_factory=psycopg.rows.dict_row) as holder:
        assert pg.try_advisory_lock(holder, "group", group_id)  # a sync running in another process
        outcomes = _tick(sub, datetime.now(UTC) + timedelta(days=1))
        assert [o.status for o in outcomes] == ["busy"]
        result = sub.cli("sync", "--all")
        assert result.exit_code == 1 and "busy" in result.stderr
    assert [o.status for o in _tick(sub, datetime.now(UTC) + timedelta(days=1))] == ["synced"]


def test_face_model_change_pauses_the_link(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    changed = Site(
        leader.node, write_config(tmp_path / "m.yaml", leader.node, "leader", face_model="new-net v3")
    )
    assert changed.ok("setup", "--json").json()["face_model_changed"] is True
    result = sub.cli("sync", str(local), "--json")
    assert result.exit_code == 1 and result.json()[0]["status"] == "paused"
    assert "new-net v3" in result.stderr and not _enabled(sub)
    assert sub.ok("status", "--json").json()[0]["state"] == "paused"
    _tick(sub, datetime.now(UTC))  # a probe keeps it paused
    assert not _enabled(sub)
    leader.ok("setup")  # the model is back
    _tick(sub, datetime.now(UTC))
    assert _enabled(sub) and sub.ok("status", "--json").json()[0]["state"] == "ready"


def test_attach_schedule_overrides_the_leaders(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local, "--schedule", "FREQ=MINUTELY;INTERVAL=15")
    assert not _enabled(sub)
    assert sub.ok("status", "--json").json()[0]["schedule"] == "FREQ=MINUTELY;INTERVAL=15"
    bad = sub.cli(
        "attach",
        "--remote-list",
        "1",
        "--remote-url",
        leader.leader_url,
        "--local-list",
        "1",
        "--schedule",
        "FREQ=SOMETIMES",
    )
    assert bad.exit_code == 2 and "invalid RRULE" in bad.stderr


def test_tick_repairs_a_window_left_open(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    (name,) = group_names(sub)
    sub.node.execute(f'ALTER SUBSCRIPTION "{name}" ENABLE')  # a crash in the middle of a window
    assert _tick(sub, datetime.now(UTC)) == [] and not _enabled(sub)


def test_run_daemon_syncs_at_startup_and_stops_cleanly(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    add_dossiers(leader.node, remote, 2)
    executable = Path(sys.executable).with_name("pgsync-dossier")
    daemon = subprocess.Popen(
        [str(executable), "--config", str(sub.config_path), "run"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_same(leader.node, remote, sub.node, local)  # the start-up sync
        wait_until(
            lambda: sub.node.execute("SELECT count(*) AS n FROM pgsync.sync_run WHERE reason = 'startup'")[0][
                "n"
            ],
            "the start-up sync to be recorded",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "stopped" in err and not _enabled(sub)
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def test_probe_leaves_a_window_that_another_process_holds(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = _windowed(sites, tmp_path)
    sub = sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    attach(sub, leader, remote, local)
    group = sub.node.execute("SELECT id, name FROM pgsync.sync_group")[0]
    with psycopg.connect(sub.node.url, autocommit=True, row_factory=psycopg.rows.dict_row) as holder:
        assert pg.try_advisory_lock(holder, "group", group["id"])  # a window open in another process
        holder.execute(f'ALTER SUBSCRIPTION "{group["name"]}" ENABLE')
        assert _tick(sub, datetime.now(UTC)) == [] and _enabled(sub)  # not closed under its feet
    assert _tick(sub, datetime.now(UTC)) == [] and not _enabled(sub)  # a crash's leftover is closed

"""Verified, continuously: `tick` alone proves each replica equal on `verify_schedule`, and a
replica damaged behind the product's back is found, repaired in place and reported.

Damage is done as a superuser would, in replica mode on the Subscriber, where neither the guard
nor the apply trigger runs. The verification is made due by dating the link's attach two days
back (as if it had been attached then): the schedule is daily, so one occurrence has passed
since. Convergence is judged by the SQL oracle; the product's own reports (history, status,
/metrics) are what is under test here, checked against it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pgsync_dossier import config as config_module
from pgsync_dossier import metrics
from tests.harness import (
    NIGHTLY,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    make_list,
    oracle_verdict,
    write_config,
)

DAILY = "FREQ=DAILY;BYHOUR=4;BYMINUTE=15"


def _subscriber(sites: dict[str, Site], tmp_path: Path, **overrides: Any) -> Site:
    sub = sites["subscriber_a"]
    return Site(sub.node, write_config(tmp_path / "verifying.yaml", sub.node, "subscriber", **overrides))


def _replica(leader: Site, sub: Site) -> tuple[int, int]:
    remote = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, remote, 20)
    local = make_list(sub.node, "Replica")
    attach(sub, leader, remote, local)
    sub.node.execute(
        "UPDATE pgsync.link SET created_at = created_at - interval '2 days' WHERE local_list_id = %s", [local]
    )
    return remote, local


def _damage(sub: Site, local: int) -> None:
    """A dossier's comment changed and a face deleted, of rows the Leader's writers leave alone."""
    with sub.node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "UPDATE dossier SET comment = 'tampered' WHERE dossier_list_id = %s AND name = 'd0'", [local]
        )
        conn.execute(
            "DELETE FROM dossier_face WHERE id = (SELECT f.id FROM dossier_face AS f JOIN dossier AS d "
            "ON d.id = f.dossier_id WHERE d.dossier_list_id = %s AND d.name = 'd1' ORDER BY f.id LIMIT 1)",
            [local],
        )


def _history(sub: Site, local: int) -> list[dict[str, Any]]:
    return sub.node.execute(
        "SELECT reason, equal, dossiers_missing, dossiers_extra, dossiers_changed, faces_missing, "
        "faces_extra, faces_changed, leader_lsn, error FROM pgsync.verification "
        "WHERE local_list_id = %s ORDER BY id",
        [local],
    )


def _metric(text: str, name: str, local: int) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and f'local_list="{local}"' in line:
            return line.rsplit(" ", 1)[1]
    return None


def test_tick_finds_a_damaged_replica_repairs_it_and_says_so(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = sites["leader"]
    sub = _subscriber(sites, tmp_path, verify_schedule=DAILY)
    remote, local = _replica(leader, sub)
    row = sub.ok("status", "--json").json()[0]
    assert (row["verified"], row["verified_at"]) == ("never", None)
    assert (
        _metric(
            metrics.render(config_module.load(sub.config_path)), "pgsync_dossier_link_verified_equal", local
        )
        is None
    )

    _damage(sub, local)
    assert not oracle_verdict(leader, sub, [(remote, local)]).equal
    ticked = sub.cli("tick")
    assert ticked.exit_code == 0, ticked.stderr

    found, repaired = _history(sub, local)  # before assert_converged: its `verify` is recorded too
    assert found["reason"] == "schedule" and found["equal"] is False and found["error"] is None
    assert (found["dossiers_changed"], found["faces_missing"]) == (1, 1)
    assert (
        found["dossiers_missing"]
        == found["dossiers_extra"]
        == found["faces_extra"]
        == found["faces_changed"]
        == 0
    )
    assert found["leader_lsn"] > 0
    assert repaired["reason"] == "repair" and repaired["equal"] is True
    assert_converged(leader, sub, [(remote, local)])
    row = sub.ok("status", "--json").json()[0]
    assert row["verified"] == "equal" and row["verified_at"] is not None and row["verified_differences"] == 0
    assert row["verify_schedule"] == DAILY
    text = metrics.render(config_module.load(sub.config_path))
    assert _metric(text, "pgsync_dossier_link_verified_equal", local) == "1"
    assert _metric(text, "pgsync_dossier_link_last_verified_timestamp_seconds", local) is not None
    assert _metric(text, "pgsync_dossier_link_verify_interval_seconds", local) == "86400.0"

    # Proven today: the next tick does not verify again before the next occurrence.
    assert sub.cli("tick").exit_code == 0
    assert [row["reason"] for row in _history(sub, local)].count("schedule") == 1


def test_without_repair_on_divergence_it_stays_marked(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = sites["leader"]
    sub = _subscriber(sites, tmp_path, verify_schedule=DAILY, repair_on_divergence=False)
    remote, local = _replica(leader, sub)
    _damage(sub, local)
    assert sub.cli("tick").exit_code == 0
    (found,) = _history(sub, local)
    assert found["equal"] is False
    assert not oracle_verdict(leader, sub, [(remote, local)]).equal, "nothing repaired it"
    row = sub.ok("status", "--json").json()[0]
    assert row["verified"] == "differs" and row["verified_differences"] == 2
    assert (
        _metric(
            metrics.render(config_module.load(sub.config_path)), "pgsync_dossier_link_verified_equal", local
        )
        == "0"
    )
    # `verify --repair` by hand ends it, and is recorded as well.
    assert sub.cli("verify", "--repair", str(local)).exit_code == 0
    assert [(row["reason"], row["equal"]) for row in _history(sub, local)][-2:] == [
        ("manual", False),
        ("repair", True),
    ]
    assert sub.ok("status", "--json").json()[0]["verified"] == "equal"
    assert_converged(leader, sub, [(remote, local)])


def test_verify_schedule_none_never_verifies(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = sites["leader"]
    sub = _subscriber(sites, tmp_path, verify_schedule="none")
    _remote, local = _replica(leader, sub)
    assert sub.cli("tick").exit_code == 0
    assert _history(sub, local) == []
    row = sub.ok("status", "--json").json()[0]
    assert row["verified"] == "never" and row["verify_schedule"] is None
    assert (
        _metric(
            metrics.render(config_module.load(sub.config_path)),
            "pgsync_dossier_link_verify_interval_seconds",
            local,
        )
        is None
    )


def test_a_list_being_written_is_not_reported_different_but_damage_is(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    """The Leader's application writes all along (a new dossier and an edit of one of its own every
    10 ms): the two sides are read at slightly different moments, which is no divergence; the
    damage (to rows the application leaves alone) is."""
    leader = sites["leader"]
    sub = _subscriber(sites, tmp_path, verify_schedule="none")
    remote, local = _replica(leader, sub)
    stop = threading.Event()

    def write() -> None:
        with leader.node.connect() as conn:
            n = 0
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO dossier (dossier_list_id, name, comment) VALUES (%s, %s, 'live')",
                    [remote, f"w{n}"],
                )
                conn.execute(
                    "UPDATE dossier SET comment = %s WHERE id = "
                    "(SELECT id FROM dossier WHERE dossier_list_id = %s AND name LIKE 'w%%' "
                    "ORDER BY random() LIMIT 1)",
                    [f"edit {n}", remote],
                )
                n += 1
                time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        for _ in range(3):
            clean = sub.cli("verify", str(local), "--json")
            assert clean.exit_code == 0, clean.stdout + clean.stderr
        _damage(sub, local)
        damaged = sub.cli("verify", str(local), "--json")
        assert damaged.exit_code == 1
        (row,) = damaged.json()
        assert (row["missing"], row["extra"], row["changed"]) == (1, 0, 1), row
    finally:
        stop.set()
        writer.join(timeout=10)
    assert [(r["equal"]) for r in _history(sub, local)] == [True, True, True, False]


def test_a_windowed_group_is_verified_only_after_its_windows_sync(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    """A verification syncs first: outside a window it would open one of its own."""
    leader = sites["leader"]
    sub = _subscriber(sites, tmp_path, verify_schedule=DAILY)
    remote = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, remote, 5)
    local = make_list(sub.node, "Replica")
    attach(sub, leader, remote, local, "--schedule", NIGHTLY)
    sub.node.execute(
        "UPDATE pgsync.link SET created_at = created_at - interval '2 days' WHERE local_list_id = %s", [local]
    )
    syncs = sub.node.execute("SELECT count(*) AS n FROM pgsync.sync_run")[0]["n"]
    assert sub.cli("tick").exit_code == 0
    assert _history(sub, local) == [], "no window was due: no verification, no sync"
    assert sub.node.execute("SELECT count(*) AS n FROM pgsync.sync_run")[0]["n"] == syncs

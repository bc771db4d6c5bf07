"""Self-healing replicas: in-place repair, lost and missing slots, streams consumed elsewhere,
copies of a Subscriber, and deadlines that hold.

Damage is done behind the guard's back, as a broken restore or a superuser would: in replica
mode on the Subscriber, where neither the guard nor the apply trigger runs.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgsync_dossier import compare, metrics, pg, scheduler
from pgsync_dossier import config as config_module
from pgsync_dossier.sync import SyncOutcome
from tests.harness import (
    EXECUTABLE,
    NIGHTLY,
    TEMPLATE_DB,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    drop_subscriptions,
    group_names,
    make_list,
    oracle_verdict,
    wait_for_backend,
    wait_until,
    write_config,
)


def _damage(sub: Site, local: int) -> dict[str, int]:
    """3 dossiers (and their faces) gone, 2 strays added, 4 comments and 2 embeddings changed."""
    with sub.node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL pgsync.bulk = on")
        ids = [
            r["id"]
            for r in conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id", [local])
        ]
        conn.execute("DELETE FROM dossier_face WHERE dossier_id = ANY (%s)", [ids[:3]])
        conn.execute("DELETE FROM dossier WHERE id = ANY (%s)", [ids[:3]])
        for n in range(2):
            conn.execute("INSERT INTO dossier (dossier_list_id, name) VALUES (%s, %s)", [local, f"stray {n}"])
        conn.execute("UPDATE dossier SET comment = 'tampered' WHERE id = ANY (%s)", [ids[3:7]])
        conn.execute("UPDATE dossier_face SET embedding = '\\x00' WHERE dossier_id = ANY (%s)", [ids[7:9]])
    return {"missing": 3 + 3, "extra": 2, "changed": 4 + 2}


def _attached(sites: dict[str, Site], count: int = 40, *extra: str) -> tuple[int, int]:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, count, faces_each=1)
    attach(sub, leader, remote, local, *extra)
    return remote, local


def test_verify_names_each_kind_of_difference(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites)
    expected = _damage(sub, local)
    result = sub.cli("verify", str(local), "--json")
    assert result.exit_code == 1 and "verify --repair" in result.stderr
    (row,) = result.json()
    assert row["match"] is False and {kind: row[kind] for kind in expected} == expected
    assert row["dossiers"] == 39 and row["leader_dossiers"] == 40
    # The oracle finds the same damage that verify reports, kind by kind.
    found = oracle_verdict(leader, sub, [(remote, local)])
    assert found.counts() == expected, found.problems()
    (compared,) = found.lists
    assert (compared.replica_rows["dossier"], compared.leader_rows["dossier"]) == (39, 40)
    assert (compared.replica_rows["dossier_face"], compared.leader_rows["dossier_face"]) == (
        row["faces"],
        row["leader_faces"],
    )


def test_the_same_change_on_many_rows_is_seen_on_every_row(sites: dict[str, Site]) -> None:
    """A bulk update behind the guard's back changes each row's hash by the same amount; a
    chunk digest that XORed the rows' hashes as they are would cancel those changes in pairs
    (two such rows in one chunk look like none) and verify would miss about half of them."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 400)
    with sub.node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE dossier SET active = NOT active WHERE dossier_list_id = %s", [local])
        conn.execute("UPDATE dossier_face SET model = 'retrained' WHERE dossier_list_id = %s", [local])
    result = sub.cli("verify", str(local), "--json")
    assert result.exit_code == 1
    (row,) = result.json()
    assert (row["missing"], row["extra"], row["changed"]) == (0, 0, 800)
    found = oracle_verdict(leader, sub, [(remote, local)])  # the oracle sees every changed row too
    assert found.counts() == {"missing": 0, "extra": 0, "changed": 800}, found.problems()
    repaired = sub.ok("repair", str(local), "--confirm", "--json").json()
    assert repaired["changed"] == 800
    assert_converged(leader, sub, [(remote, local)])


def test_repair_fixes_in_place_and_the_list_never_goes_empty(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 200)
    expected = _damage(sub, local)
    assert oracle_verdict(leader, sub, [(remote, local)]).counts() == expected
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:  # a reader of the watch list, as an application polls it
        with sub.node.connect() as conn:
            while not stop.is_set():
                (count,) = conn.execute(
                    "SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s", [local]
                ).fetchall()
                seen.append(count["n"])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        repaired = sub.ok("repair", str(local), "--confirm", "--json").json()
    finally:
        stop.set()
        reader.join(10)
    assert {kind: repaired[kind] for kind in expected} == expected
    assert repaired["dossiers"] == 200 and repaired["faces"] == 200
    assert seen and min(seen) >= 199  # 200 - 3 + 2 before, 200 after: never empty
    assert_converged(leader, sub, [(remote, local)])
    again = sub.ok("repair", str(local), "--confirm", "--json").json()
    assert (again["missing"], again["extra"], again["changed"]) == (0, 0, 0)


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads a table."""
    if "Relation Name" in plan:
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


def test_a_repair_reads_only_the_differing_ranges_whatever_the_statistics(sites: dict[str, Site]) -> None:
    """A Leader list bulk-loaded since autovacuum last analyzed its tables (a list of a million
    is under a tenth of a large table, autovacuum's threshold) is 1 row to the planner, and the
    orchestrator may not ANALYZE a Leader. With that estimate the range query read the whole
    list once per differing range, through the (dossier_list_id, name) index with the range as
    a filter (27 minutes at a million on the Subscriber's side). Each range must bound its
    index scan, as the Leader plans it."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    other = make_list(leader.node, "Other")
    for table in compare.TABLES:
        leader.node.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    add_dossiers(leader.node, other, 50, faces_each=1)
    leader.node.execute("ANALYZE dossier, dossier_face")  # before the list exists
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 400, faces_each=1)
    attach(sub, leader, remote, local)
    expected = _damage(sub, local)

    ranges = compare.id_ranges([3, 4, 9, 200], compare.chunk_shift(400))
    params = compare.range_params(remote, dict.fromkeys(range(len(compare.TABLES)), ranges))
    with leader.node.connect() as conn:
        query = pg.query("range_rows", "compare.sql")  # as the repair runs it on the Leader
        (row,) = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params)
    scans = list(_scans(row["QUERY PLAN"][0]["Plan"]))
    assert {scan["Relation Name"] for scan in scans} == set(compare.TABLES), scans
    for scan in scans:  # the range bounds an index scan, never filters the list's rows
        assert not re.search(r"\bid (>=|<=)", scan.get("Filter", "")), scan

    repaired = sub.ok("repair", str(local), "--confirm", "--json").json()
    assert {kind: repaired[kind] for kind in expected} == expected
    assert_converged(leader, sub, [(remote, local)])


def test_verify_repair_repairs_what_it_found(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites)
    expected = _damage(sub, local)
    assert oracle_verdict(leader, sub, [(remote, local)]).counts() == expected
    (row,) = sub.ok("verify", "--repair", "--json").json()
    assert row["match"] is True and row["repaired"] == expected
    assert_converged(leader, sub, [(remote, local)])


@contextmanager
def _leader_setting(leader: Site, name: str, value: str) -> Iterator[None]:
    with psycopg.connect(leader.node.cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        with psycopg.connect(leader.node.cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
            conn.execute("SELECT pg_reload_conf()")


def _retain(leader: Site, megabytes: int) -> None:
    """Write WAL the group's filter does not name (rows of a list nobody replicates) until
    the slot retains about this much."""
    other = make_list(leader.node, f"unreplicated {time.monotonic_ns()}")
    with leader.node.connect() as conn:
        while _slot(leader)["retained"] < megabytes * 2**20:
            conn.execute(
                "INSERT INTO dossier (dossier_list_id, name, comment) "
                "SELECT %s, 'x', repeat('y', 3000) FROM generate_series(1, 300)",
                [other],
            )


def _lose(leader: Site) -> bool:
    """Past the limit: switch segments and checkpoint (when a slot is declared lost)."""
    _retain(leader, _slot(leader)["retained"] // 2**20 + 40)
    leader.node.execute("SELECT pg_switch_wal()")
    leader.node.execute("CHECKPOINT")
    return bool(_slot(leader)["wal_status"] == "lost")


def _tick(sub: Site, at: datetime | None = None) -> list[SyncOutcome]:
    return scheduler.tick(
        config_module.load(sub.config_path), clock=lambda: at or datetime.now(UTC), timeout_s=120
    )


def test_a_lost_slot_is_warned_of_then_healed_by_tick(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 20, "--schedule", NIGHTLY)
    with _leader_setting(leader, "max_slot_wal_keep_size", "64MB"):
        add_dossiers(leader.node, remote, 3, prefix="in-the-gap-")  # what the lost slot held
        _retain(leader, 56)
        row = sub.ok("status", str(local), "--json").json()[0]
        assert row["warning"] and "max_slot_wal_keep_size" in row["warning"], row
        wait_until(lambda: _lose(leader), "the slot to be lost", 120)
        outcomes = _tick(sub)  # no window is due: the tick heals anyway
    assert [(o.reason, o.status) for o in outcomes] == [("heal", "synced")]
    # The oracle first (verify syncs, and this test reads what the heal alone left behind).
    assert_converged(leader, sub, [(remote, local)], verify=False)
    assert _slot(leader)["wal_status"] in ("reserved", "extended")
    row = sub.ok("status", str(local), "--json").json()[0]
    assert row["last_heal"] and "lost this group's slot" in row["last_heal"] and row["state"] == "ready"
    heals = sub.node.execute("SELECT ok, note FROM pgsync.sync_run WHERE reason = 'heal'")
    assert len(heals) == 1 and heals[0]["ok"]
    metrics_row = sub.node.execute("SELECT count(*) AS n FROM pgsync.sync_run WHERE reason = 'heal'")[0]["n"]
    assert metrics_row == 1
    # A heal that is running now (no finished_at yet) neither breaks status nor hides the last one.
    running = sub.node.execute(
        "INSERT INTO pgsync.sync_run (group_id, reason) SELECT group_id, 'heal' FROM pgsync.link "
        "WHERE local_list_id = %s RETURNING id",
        [local],
    )[0]["id"]
    try:
        assert sub.ok("status", str(local), "--json").json()[0]["last_heal"] == row["last_heal"]
        samples = metrics.link_samples(config_module.load(sub.config_path))
        assert [s.history.last_heal_at is not None for s in samples if s.row.local_list == local] == [True]
    finally:
        sub.node.execute("DELETE FROM pgsync.sync_run WHERE id = %s", [running])
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def _confirmed(leader: Site) -> int:
    rows = leader.node.execute(
        "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint AS lsn FROM pg_replication_slots"
    )
    return int(rows[0]["lsn"])


def _slot(leader: Site) -> dict[str, Any]:
    (slot,) = leader.node.execute(
        "SELECT slot_name, wal_status, active, "
        "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint AS retained "
        "FROM pg_replication_slots"
    )
    return slot


def test_a_missing_slot_is_recreated_and_the_lists_repaired(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 20)
    name = _slot(leader)["slot_name"]
    sub.node.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
    wait_until(lambda: not _slot(leader)["active"], "the stream to stop")
    leader.node.execute("SELECT pg_drop_replication_slot(%s)", [name])  # a failover that lost it
    add_dossiers(leader.node, remote, 2, prefix="after-the-loss-")
    outcomes = _tick(sub)
    assert [(o.reason, o.status) for o in outcomes] == [("heal", "synced")]
    assert_converged(leader, sub, [(remote, local)], verify=False)
    assert sub.ok("status", "--json").json()[0]["stream"] == "streaming"
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


@pytest.fixture
def plain_db(nodes: dict[str, Node]) -> Iterator[Node]:
    """A migrated database without pgsync's setup, on subscriber B's cluster (a stranger)."""
    node = Node("stranger", nodes["subscriber_b"].cluster, "Stranger's DB")
    node.janitor(node.dbname).drop()
    node.janitor(node.dbname, template=TEMPLATE_DB).init()
    yield node
    drop_subscriptions(node)
    node.janitor(node.dbname).drop()


def test_a_stream_consumed_elsewhere_is_noticed_and_repaired(sites: dict[str, Site], plain_db: Node) -> None:
    """A hand-made subscription on the group's slot (as a cloned Subscriber's would be) takes
    changes while this Subscriber's window is closed: the next sync says so and repairs."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 10, "--schedule", NIGHTLY)
    (name,) = group_names(sub)
    add_dossiers(leader.node, remote, 4, prefix="stolen-")
    plain_db.execute(
        sql.SQL(
            "CREATE SUBSCRIPTION thief CONNECTION {} PUBLICATION {} "
            "WITH (slot_name = {}, create_slot = false, copy_data = false)"
        ).format(sql.Literal(leader.node.url), sql.Identifier(name), sql.Literal(name))
    )
    wait_until(
        lambda: plain_db.execute("SELECT count(*) AS n FROM dossier")[0]["n"] == 4, "the thief to consume"
    )
    stopped_at = sub.node.execute("SELECT stopped_at_lsn FROM pgsync.sync_group")[0]["stopped_at_lsn"]
    assert stopped_at is not None  # where this Subscriber's stream last stopped
    # The thief confirms what it took (feedback comes every few seconds): the slot moves on.
    wait_until(lambda: _confirmed(leader) > stopped_at, "the thief's confirmation", 60)
    drop_subscriptions(plain_db)
    wait_until(lambda: not _slot(leader)["active"], "the thief to let go")
    result = sub.ok("sync", str(local), "--json").json()
    assert result[0]["status"] == "synced"
    assert_converged(leader, sub, [(remote, local)], verify=False)  # the stolen rows are here
    row = sub.ok("status", str(local), "--json").json()[0]
    assert "someone else streamed from this group's slot" in row["last_heal"]
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def test_a_copied_subscriber_gets_its_own_identity_and_leaves_the_originals_slot_alone(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 10, "--schedule", NIGHTLY)
    (original_slot,) = group_names(sub)
    with psycopg.connect(sub.node.cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [sub.node.dbname],
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier("Copied subscriber"), sql.Identifier(sub.node.dbname)
            )
        )
    copy_node = Node("copy", sub.node.cluster, "Copied subscriber")
    try:
        copied = Site(
            copy_node, write_config(tmp_path / "copy.yaml", copy_node, "subscriber", node_name="copy")
        )
        refused = copied.cli("sync", "--all")
        assert refused.exit_code == 3 and "run pgsync-dossier setup here first" in refused.stderr
        assert copied.ok("setup", "--json").json()["new_identity"] is True
        (copy_group,) = group_names(copied)
        assert copy_group != original_slot
        add_dossiers(leader.node, remote, 2, prefix="later-")
        copied.ok("sync", "--all")
        sub.ok("sync", "--all")
        for site in (sub, copied):
            assert_converged(leader, site, [(remote, local)], verify=False)
        slots = {
            row["slot_name"] for row in leader.node.execute("SELECT slot_name FROM pg_replication_slots")
        }
        assert slots == {original_slot, copy_group}
        for site in (sub, copied):
            assert_converged(leader, site, [(remote, local)])  # and verify agrees with the oracle
    finally:
        drop_subscriptions(copy_node)
        copy_node.janitor(copy_node.dbname).drop()


def _wait_for_the_window_held_open(sub: Site, process: subprocess.Popen[str]) -> None:
    """Until the sync in `process` is in the middle of its window: the group's subscription is
    enabled, its apply worker waits for the heartbeat row the test holds locked, and the sync
    polls that row for its barrier (the only place it reads it)."""

    def the_window() -> bool:
        assert process.poll() is None, "the sync ended before its window was seen open"
        rows = sub.node.execute(
            "SELECT s.subenabled, count(a.pid) FILTER (WHERE a.wait_event_type = 'Lock') AS waiting "
            "FROM pg_subscription AS s "
            "LEFT JOIN pg_stat_subscription AS w ON w.subid = s.oid "
            "LEFT JOIN pg_stat_activity AS a ON a.pid = w.pid "
            "WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "GROUP BY s.subenabled"
        )
        return bool(rows) and all(row["subenabled"] and row["waiting"] > 0 for row in rows)

    wait_until(the_window, "the window to open, its stream waiting for the locked heartbeat", 60)
    wait_for_backend(sub, "the sync to wait for its barrier", query_like="SELECT seq FROM pgsync.heartbeat %")


def test_a_leader_dying_mid_window_is_unreachable_at_once(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = _attached(sites, 5, "--schedule", NIGHTLY)
    add_dossiers(leader.node, remote, 2, prefix="pending-")
    blocker = sub.node.connect()
    blocker.execute("BEGIN")
    blocker.execute("SELECT * FROM pgsync.heartbeat FOR UPDATE")  # the window cannot finish
    process = subprocess.Popen(
        [EXECUTABLE, "--config", str(sub.config_path), "sync", str(local), "--timeout", "120"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_the_window_held_open(sub, process)
        started = time.monotonic()
        leader.node.cluster.stop(mode="immediate")
        _, err = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        leader.node.cluster.start()
    assert process.returncode == 4, err
    assert took < 15 and ("lost the Leader" in err or "unreachable" in err or "cannot reach" in err), err
    sub.ok("sync", str(local))
    assert_converged(leader, sub, [(remote, local)])


def test_a_deadline_covers_the_whole_sync(sites: dict[str, Site]) -> None:
    """Two groups (two schedules) whose windows cannot finish: `sync --all --timeout 6` ends
    within about six seconds, not six per group."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    for n, schedule in enumerate((NIGHTLY, "FREQ=DAILY;BYHOUR=4")):
        remote, local = make_list(leader.node, f"L{n}"), make_list(sub.node, f"T{n}")
        attach(sub, leader, remote, local, "--schedule", schedule)
    blocker = sub.node.connect()
    blocker.execute("BEGIN")
    blocker.execute("SELECT * FROM pgsync.heartbeat FOR UPDATE")
    try:
        started = time.monotonic()
        result = sub.cli("sync", "--all", "--timeout", "6")
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.exit_code == 1 and "did not catch up" in result.stderr
    assert took < 10, took

"""attach / detach / read-only replicas, on real clusters."""

from __future__ import annotations

import psycopg
import pytest

from tests.harness import Site, add_dossiers, assert_converged, attach, make_list, wait_for_same

#: No row of any other list on the Subscriber: nothing leaked outside the replica.
NOTHING = {"dossier": 0, "dossier_face": 0}


def test_leader_edits_arrive_and_other_lists_never_do(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted, other = make_list(leader.node, "Wanted"), make_list(leader.node, "Other")
    add_dossiers(leader.node, wanted, 5)
    add_dossiers(leader.node, other, 3)
    make_list(sub.node, "Local A")
    replica = make_list(sub.node, "Replica of Wanted")

    result = attach(sub, leader, wanted, replica)
    assert result["dossiers"] == 5 and result["faces"] == 10 and result["synced"] is True
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)

    ids = add_dossiers(leader.node, wanted, 2, prefix="new")
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET comment = 'updated' WHERE id = %s", [ids[0]])
        conn.execute("UPDATE dossier_face SET model = %s WHERE dossier_id = %s", ["arcface-r100 v2", ids[1]])
        conn.execute("DELETE FROM dossier WHERE id = %s", [ids[1]])
    add_dossiers(leader.node, other, 2, prefix="other")
    wait_for_same(leader.node, wanted, sub.node, replica)
    total = sub.node.execute("SELECT count(*) AS n FROM dossier")[0]["n"]
    assert total == 6  # nothing of the Leader's other list arrived anywhere
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)


def test_refuses_a_non_empty_list_and_leaves_nothing(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted = make_list(leader.node, "Wanted")
    local = make_list(sub.node, "Busy")
    add_dossiers(sub.node, local, 3)
    result = sub.cli(
        "attach", "--remote-list", str(wanted), "--remote-url", leader.leader_url, "--local-list", str(local)
    )
    assert result.exit_code == 3
    assert "synchronization canceled: watch list" in result.stderr and "3 dossiers" in result.stderr
    assert not leader.node.execute("SELECT * FROM pg_publication")
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")
    assert not sub.node.execute("SELECT * FROM pg_subscription")
    assert not sub.node.execute("SELECT * FROM pgsync.link")


def test_replica_is_read_only_and_detach_makes_it_writable(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 2)
    replica = make_list(sub.node, "Replica")
    attach(sub, leader, wanted, replica)
    dossier_id = sub.node.execute("SELECT id FROM dossier LIMIT 1")[0]["id"]
    for statement, params in [
        ("INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'x')", [replica]),
        ("UPDATE dossier SET name = 'x' WHERE id = %s", [dossier_id]),
        ("DELETE FROM dossier WHERE id = %s", [dossier_id]),
        ("UPDATE dossier_face SET model = 'x' WHERE dossier_id = %s", [dossier_id]),
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="read-only replica.*Leader"):
            sub.node.execute(statement, params)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="TRUNCATE"):
        sub.node.execute("TRUNCATE dossier CASCADE")
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)  # none of it changed a row

    detached = sub.ok("detach", str(replica), "--json").json()
    assert detached["slot_dropped"] is True and detached["purged_dossiers"] == 0
    assert detached["caught_up"] is True
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")
    assert not sub.node.execute("SELECT * FROM pg_subscription")
    sub.node.execute("UPDATE dossier SET name = 'local edit' WHERE id = %s", [dossier_id])
    again = sub.cli("detach", str(replica))
    assert again.exit_code == 3 and "not a replica" in again.stderr


def test_the_planner_knows_a_copied_list_at_once(sites: dict[str, Site]) -> None:
    """Statistics taken before the copy say the list is nearly empty; with them a repair's
    range query read the whole list once per chunk range (27 minutes at a million). The copy
    takes them again, so the planner's estimate of the list is its size, and a range of ids
    within it is read through the (dossier_list_id, id) index."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 400, faces_each=2)
    other = make_list(sub.node, "Local")
    for table in ("dossier", "dossier_face"):
        sub.node.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    sub.node.execute(
        "INSERT INTO dossier (dossier_list_id, name, comment) "
        "SELECT %s, 'p' || g, '' FROM generate_series(1, 50) AS g",
        [other],
    )
    sub.node.execute("ANALYZE dossier, dossier_face")  # before the list exists here
    local = make_list(sub.node, "Here")
    attach(sub, leader, wanted, local)

    def plan(query: str) -> dict[str, object]:
        (row,) = sub.node.execute(f"EXPLAIN (FORMAT JSON) {query}", [local])
        top: dict[str, object] = row["QUERY PLAN"][0]["Plan"]
        return top

    assert plan("SELECT * FROM dossier WHERE dossier_list_id = %s")["Plan Rows"] >= 200
    assert plan("SELECT * FROM dossier_face WHERE dossier_list_id = %s")["Plan Rows"] >= 400
    ranged = plan(
        "SELECT id FROM dossier WHERE dossier_list_id = %s "
        "AND id BETWEEN '10000000-0000-0000-0000-000000000000' AND '1fffffff-ffff-ffff-ffff-ffffffffffff'"
    )
    assert "dossier_list_id_name" not in str(ranged), ranged
    assert_converged(leader, sub, [(wanted, local)])

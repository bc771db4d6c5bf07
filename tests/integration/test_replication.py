"""What arrives where: moves between lists, TRUNCATE, fan-in and fan-out, TOAST-sized rows."""

from __future__ import annotations

import os

from tests.harness import (
    Site,
    add_dossiers,
    assert_converged,
    attach,
    list_rows,
    make_list,
    oracle_verdict,
    rows_outside,
    wait_for_same,
    wait_until,
)

#: No row of any other list on the Subscriber: nothing leaked outside the replicas.
NOTHING = {"dossier": 0, "dossier_face": 0}


def test_dossier_moved_out_and_back_with_faces(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted, other = make_list(leader.node, "Wanted"), make_list(leader.node, "Other")
    mover = add_dossiers(leader.node, wanted, 3, faces_each=3)[0]
    add_dossiers(leader.node, other, 1)
    replica = make_list(sub.node, "Replica")
    attach(sub, leader, wanted, replica)
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [other, mover])
    wait_for_same(leader.node, wanted, sub.node, replica)
    assert len(list_rows(sub.node, replica)[1]) == 6
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)  # the moved rows left entirely
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, mover])
    wait_for_same(leader.node, wanted, sub.node, replica)
    assert len(list_rows(sub.node, replica)[1]) == 9
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)


def test_large_rows_moved_into_the_list_arrive_whole(sites: dict[str, Site]) -> None:
    """Rows at the size limits stay inline, so a move (sent as INSERT) carries every value."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted, other = make_list(leader.node, "Wanted"), make_list(leader.node, "Other")
    replica = make_list(sub.node, "Replica")
    attach(sub, leader, wanted, replica)
    with leader.node.connect() as conn:
        (inserted,) = conn.execute(
            "INSERT INTO dossier (dossier_list_id, name, comment) VALUES (%s, %s, %s) RETURNING id",
            [other, "x" * 1000, os.urandom(2000).hex()],  # 4000 incompressible bytes
        ).fetchall()
        dossier_id = inserted["id"]
        conn.execute(
            "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, %s, %s)",
            [dossier_id, os.urandom(7168), "m" * 200],
        )
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, dossier_id])
    wait_for_same(leader.node, wanted, sub.node, replica)
    assert sub.node.execute("SELECT count(*) AS n FROM dossier_face")[0]["n"] == 1
    assert_converged(leader, sub, [(wanted, replica)], outside=NOTHING)


def test_truncate_on_the_leader_does_not_wipe_subscribers(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 4)
    replica = make_list(sub.node, "Replica")
    local = make_list(sub.node, "Local")
    add_dossiers(sub.node, local, 2)
    attach(sub, leader, wanted, replica)
    leader.node.execute("TRUNCATE dossier CASCADE")
    add_dossiers(leader.node, wanted, 1, prefix="after")
    # The new row arrives (the link is alive) and the truncated ones stay: not replicated.
    wait_until(
        lambda: (
            sub.node.execute("SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s", [replica])[0][
                "n"
            ]
            == 5
        ),
        "the row inserted after TRUNCATE",
    )
    assert len(list_rows(sub.node, local)[0]) == 2

    def only_the_truncated_rows_stay() -> bool:
        """The oracle finds the new row (with its faces) arrived, and the 4 truncated dossiers
        with their 8 faces still here: extra, unchanged, nothing missing."""
        found = oracle_verdict(leader, sub, [(wanted, replica)])
        counts = {
            (table, kind): found.count(table, kind)
            for table in ("dossier", "dossier_face")
            for kind in ("missing", "extra", "changed")
        }
        expected = {(table, kind): 0 for table, kind in counts}
        expected.update({("dossier", "extra"): 4, ("dossier_face", "extra"): 8})
        return counts == expected and not found.apart_on_leader and not found.apart_on_replica

    wait_until(only_the_truncated_rows_stay, "the replica to hold the new row and keep the truncated ones")
    assert rows_outside(sub, [replica]) == {"dossier": 2, "dossier_face": 4}  # the local list, untouched


def test_two_lists_into_one_subscriber_and_one_list_into_two(sites: dict[str, Site]) -> None:
    leader, sub_a, sub_b = sites["leader"], sites["subscriber_a"], sites["subscriber_b"]
    first, second = make_list(leader.node, "First"), make_list(leader.node, "Second")
    add_dossiers(leader.node, first, 3)
    add_dossiers(leader.node, second, 2)
    local_a = make_list(sub_a.node, "Mine")
    add_dossiers(sub_a.node, local_a, 2)
    before_local = list_rows(sub_a.node, local_a)
    # Different local ids on each side, so the remapping is really exercised.
    make_list(sub_a.node, "padding")
    a_second, a_first = make_list(sub_a.node, "A second"), make_list(sub_a.node, "A first")
    b_first = make_list(sub_b.node, "B first")
    attach(sub_a, leader, first, a_first)
    attach(sub_a, leader, second, a_second)
    attach(sub_b, leader, first, b_first)
    add_dossiers(leader.node, first, 2, prefix="later")
    add_dossiers(leader.node, second, 1, prefix="later")
    wait_for_same(leader.node, first, sub_a.node, a_first)
    wait_for_same(leader.node, second, sub_a.node, a_second)
    wait_for_same(leader.node, first, sub_b.node, b_first)
    assert list_rows(sub_a.node, local_a) == before_local
    # Each replica holds its Leader list; A's own list is all A holds besides; B holds nothing else.
    assert_converged(
        leader, sub_a, [(first, a_first), (second, a_second)], outside={"dossier": 2, "dossier_face": 4}
    )
    assert_converged(leader, sub_b, [(first, b_first)], outside=NOTHING)
    # One stream per Subscriber, whatever the number of lists it replicates.
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 2
    status = leader.ok("status", "--json").json()
    assert {(s["list"], len(s["subscribers"])) for s in status} == {(first, 2), (second, 1)}
    (a_group,) = {
        s["group"] for row in status for s in row["subscribers"] if s["subscriber"] == "subscriber_a site"
    }
    assert sub_a.node.execute("SELECT name FROM pgsync.sync_group") == [{"name": a_group}]

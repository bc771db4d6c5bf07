"""The harness's SQL oracle is the judge of every convergence test, so it is tested itself:
each kind of damage a replica can suffer, done behind the product's back (in replica mode, where
neither the guard nor the apply trigger runs), must be found, with the rows it concerns, and
nothing must be found on an equal replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.harness import (
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    make_list,
    oracle_verdict,
    rows_outside,
)


@contextmanager
def behind_the_guard(node: Node) -> Iterator[psycopg.Connection[Any]]:
    """One transaction on `node` in replica mode: what a broken restore or a superuser does."""
    with node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        yield conn


@pytest.fixture
def replica(sites: dict[str, Site]) -> tuple[Site, Site, int, int]:
    """Leader list of 6 dossiers with 2 faces each, attached and equal."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Watched"), make_list(sub.node, "Watched (replica)")
    add_dossiers(leader.node, remote, 6)
    attach(sub, leader, remote, local)
    assert_converged(leader, sub, [(remote, local)], outside={"dossier": 0, "dossier_face": 0})
    return leader, sub, remote, local


def _one(node: Node, query: str, params: Any) -> str:
    return str(node.execute(query, params)[0]["id"])


def test_an_equal_replica_is_found_equal_and_each_damage_is_found(
    replica: tuple[Site, Site, int, int],
) -> None:
    leader, sub, remote, local = replica
    pairs = [(remote, local)]
    first_dossier = "SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id LIMIT 1 OFFSET %s"
    first_face = (
        "SELECT id FROM dossier_face WHERE dossier_list_id = %s AND dossier_id <> %s ORDER BY id LIMIT 1"
    )
    gone, renamed = _one(sub.node, first_dossier, [local, 0]), _one(sub.node, first_dossier, [local, 1])
    gone_faces = {
        str(row["id"])
        for row in sub.node.execute("SELECT id FROM dossier_face WHERE dossier_id = %s", [gone])
    }
    reembedded = _one(sub.node, first_face, [local, gone])  # a face of a dossier that stays
    with behind_the_guard(sub.node) as conn:
        # Replica mode runs no foreign key: the faces go by hand, or they would stay apart.
        conn.execute("DELETE FROM dossier_face WHERE dossier_id = %s", [gone])
        conn.execute("DELETE FROM dossier WHERE id = %s", [gone])
        conn.execute(
            "UPDATE dossier SET created_at = created_at + interval '1 microsecond' WHERE id = %s", [renamed]
        )
        conn.execute(
            "UPDATE dossier_face SET embedding = embedding || '\\x00'::bytea WHERE id = %s", [reembedded]
        )
        extra = conn.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'stray') RETURNING id::text AS id",
            [local],
        ).fetchone()
    assert extra is not None

    found = oracle_verdict(leader, sub, pairs)
    assert not found.equal
    (listed,) = found.lists
    assert listed.tables["dossier"].missing == [gone]
    assert listed.tables["dossier"].extra == [extra["id"]]
    assert listed.tables["dossier"].changed == [renamed]  # a microsecond of one column is seen
    assert set(listed.tables["dossier_face"].missing) == gone_faces and len(gone_faces) == 2
    assert listed.tables["dossier_face"].changed == [reembedded]
    assert found.count("dossier", "missing") == 1 and found.count("dossier_face", "changed") == 1
    assert not found.apart_on_leader and not found.apart_on_replica


def test_a_face_apart_from_its_dossier_is_found_on_either_side(
    replica: tuple[Site, Site, int, int],
) -> None:
    leader, sub, remote, local = replica
    elsewhere = make_list(sub.node, "elsewhere")
    face = str(
        sub.node.execute("SELECT id FROM dossier_face WHERE dossier_list_id = %s LIMIT 1", [local])[0]["id"]
    )
    with behind_the_guard(sub.node) as conn:
        conn.execute("UPDATE dossier_face SET dossier_list_id = %s WHERE id = %s", [elsewhere, face])
    found = oracle_verdict(leader, sub, [(remote, local)])
    assert [apart.face for apart in found.apart_on_replica] == [face]
    assert found.apart_on_replica[0].face_list == elsewhere
    assert found.apart_on_replica[0].dossier_list == local
    assert found.lists[0].tables["dossier_face"].missing == [face]
    assert rows_outside(sub, [local]) == {"dossier": 0, "dossier_face": 1}
    with pytest.raises(AssertionError, match="apart"):
        assert_converged(leader, sub, [(remote, local)], verify=False)


def test_a_replica_left_out_by_the_caller_is_not_taken_for_equal(
    replica: tuple[Site, Site, int, int],
) -> None:
    """The caller names the pairs: a list the product unlinked is still compared, and a list
    the Leader has but the replica lacks entirely is all missing."""
    leader, sub, remote, _local = replica
    empty = make_list(sub.node, "never attached")
    found = oracle_verdict(leader, sub, [(remote, empty)])
    assert found.count("dossier", "missing") == 6 and found.count("dossier_face", "missing") == 12


def test_a_face_apart_from_its_dossier_on_the_leader_is_found(replica: tuple[Site, Site, int, int]) -> None:
    """The Leader's foreign key forbids it, but replica mode (a restore, a superuser) skips it."""
    leader, sub, remote, local = replica
    elsewhere = make_list(leader.node, "elsewhere on the Leader")
    face = str(
        leader.node.execute("SELECT id FROM dossier_face WHERE dossier_list_id = %s LIMIT 1", [remote])[0][
            "id"
        ]
    )
    with behind_the_guard(leader.node) as conn:
        conn.execute("UPDATE dossier_face SET dossier_list_id = %s WHERE id = %s", [elsewhere, face])
    found = oracle_verdict(leader, sub, [(remote, local)])
    assert [(apart.face, apart.face_list, apart.dossier_list) for apart in found.apart_on_leader] == [
        (face, elsewhere, remote)
    ]
    assert not found.equal

"""What a relay (a Subscriber that publishes its replicas on, issue #28) rests on in PostgreSQL,
proven with hand-made publications and subscriptions (no pgsync code), as in
test_replication_facts.py.

- A chain Leader -> relay -> downstream passes every change on, rows and versions unchanged,
  on 15 (which has no `origin` option: applied changes are always published) as on 18, when
  the relay keeps the Leader's (id, list) replica identity and the Leader's list ids.
- A relay cannot have both a Subscriber's primary-key identity (which remapped list ids need)
  and a filtered publication: PostgreSQL refuses every UPDATE and DELETE of the table, the
  apply's included. REPLICA IDENTITY FULL is no way out either, as publications carry column
  lists. So a relay's replica lists keep the Leader's list ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.harness import ADMIN_PASSWORD, ADMIN_USER, Node, add_dossiers, make_list, wait_until
from tests.oracle import TABLES, row_digests

Conn = psycopg.Connection[Any]


def _conninfo(node: Node) -> str:
    return psycopg.conninfo.make_conninfo(
        host=node.cluster.host,
        port=node.cluster.port,
        dbname=node.dbname,
        user=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )


def _publish(node: Node, name: str, lists: list[int]) -> None:
    listed = sql.SQL(", ").join(sql.Literal(n) for n in lists)
    with node.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE public.dossier WHERE (dossier_list_id IN ({})), "
                "public.dossier_face WHERE (dossier_list_id IN ({})) "
                "WITH (publish = 'insert, update, delete')"
            ).format(sql.Identifier(name), listed, listed)
        )


def _subscribe(node: Node, name: str, upstream: Node, publication: str) -> None:
    with node.connect() as conn:
        conn.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
                sql.Identifier(name), sql.Literal(_conninfo(upstream)), sql.Identifier(publication)
            )
        )


def _rows(node: Node, lists: list[int]) -> dict[str, dict[str, str]]:
    """Every column of every row of these lists, the list id, versions and hash included."""
    with node.connect() as conn:
        return {f"{table} {n}": row_digests(conn, table, n, left_out=()) for table in TABLES for n in lists}


@pytest.fixture
def chain(leader: Node, subscriber_a: Node, subscriber_b: Node) -> Iterator[tuple[int, int, int]]:
    """Leader -> relay (subscriber_a) -> downstream (subscriber_b), for two of three lists made
    with the same ids on every node. The downstream's subscription is dropped first, so that its
    slot on the relay goes with it."""
    lists = [
        tuple(make_list(node, name) for name in ("Wanted", "Missing", "Other"))
        for node in (leader, subscriber_a, subscriber_b)
    ]
    assert len(set(lists)) == 1, "the three nodes number their lists alike"
    wanted, missing, other = lists[0]
    with subscriber_b.connect() as conn:
        # The downstream is an ordinary Subscriber: rows looked up by primary key.
        conn.execute("ALTER TABLE dossier REPLICA IDENTITY DEFAULT")
        conn.execute("ALTER TABLE dossier_face REPLICA IDENTITY DEFAULT")
    add_dossiers(leader, wanted, 3)
    add_dossiers(leader, other, 2, prefix="o")
    _publish(leader, "to_relay", [wanted, missing])
    _subscribe(subscriber_a, "from_leader", leader, "to_relay")
    _publish(subscriber_a, "to_downstream", [wanted, missing])
    _subscribe(subscriber_b, "from_relay", subscriber_a, "to_downstream")
    try:
        yield wanted, missing, other
    finally:
        with subscriber_b.connect() as conn:
            conn.execute("DROP SUBSCRIPTION from_relay")


def test_a_relay_with_the_leaders_list_ids_passes_every_change_on(
    leader: Node, subscriber_a: Node, subscriber_b: Node, chain: tuple[int, int, int]
) -> None:
    wanted, missing, other = chain
    replicated = [wanted, missing]
    wait_until(lambda: _rows(subscriber_b, replicated) == _rows(leader, replicated), "the initial copies")
    staying, mover, swapped, doomed = add_dossiers(leader, wanted, 4, prefix="n")
    (elsewhere,) = add_dossiers(leader, other, 1, prefix="e")
    with leader.connect() as conn:
        conn.execute("UPDATE dossier SET name = 'renamed' WHERE id = %s", [staying])
        conn.execute("UPDATE dossier_face SET model = 'm2' WHERE dossier_id = %s", [staying])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [other, mover])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, elsewhere])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [missing, swapped])
        with conn.transaction():  # a swap between the two replicated lists
            conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, swapped])
            conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE name = 'd0'", [missing])
        conn.execute("DELETE FROM dossier WHERE id = %s", [doomed])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, mover])

    def equal_on_every_hop() -> bool:
        on_leader = _rows(leader, replicated)
        return _rows(subscriber_a, replicated) == on_leader and _rows(subscriber_b, replicated) == on_leader

    wait_until(equal_on_every_hop, "every change through the relay")
    assert (
        leader.execute("SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s", [missing])[0]["n"] == 1
    )
    for node in (subscriber_a, subscriber_b):
        assert not node.execute("SELECT 1 FROM dossier WHERE dossier_list_id = %s", [other])


def test_a_filtered_publication_refuses_updates_under_a_subscribers_identity(subscriber_a: Node) -> None:
    """Why a relay keeps the Leader's identity: the primary key (a Subscriber's, for remapped
    ids) and FULL with a column list both make PostgreSQL refuse the table's updates."""
    wanted = make_list(subscriber_a, "Wanted")
    (dossier,) = add_dossiers(subscriber_a, wanted, 1)
    columns = sql.SQL("id, dossier_list_id, name, comment, active, created_at, modified_at, row_version")
    with subscriber_a.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION onward FOR TABLE public.dossier ({}) WHERE (dossier_list_id = {})"
            ).format(columns, sql.Literal(wanted))
        )
    for identity, detail in (
        ("DEFAULT", "not part of the replica identity"),
        ("FULL", "does not cover the replica identity"),
    ):
        with subscriber_a.connect() as conn:
            conn.execute(sql.SQL("ALTER TABLE dossier REPLICA IDENTITY {}").format(sql.SQL(identity)))
        with pytest.raises(psycopg.Error) as refused, subscriber_a.connect() as conn:
            conn.execute("UPDATE dossier SET name = 'renamed' WHERE id = %s", [dossier])
        assert detail in (refused.value.diag.message_detail or ""), (identity, str(refused.value))

"""The facts of docs/design-notes.md that the schema relies on, proven on the session's clusters.

These use a hand-made publication and subscription (no pgsync code), so they keep holding the
schema to what PostgreSQL needs whatever the orchestrator does.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tests.harness import ADMIN_PASSWORD, ADMIN_USER, Node, make_list, wait_until


def _add_dossier(conn: psycopg.Connection[Any], list_id: int, name: str, faces: int = 2) -> Any:
    dossier_id = conn.execute(
        "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, %s) RETURNING id", [list_id, name]
    ).fetchone()["id"]
    for n in range(faces):
        conn.execute(
            "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, %s, 'm1')",
            [dossier_id, bytes([n]) * 2048],
        )
    return dossier_id


def test_filtered_publication_allows_updates_and_deletes(leader: Node) -> None:
    wanted, other = make_list(leader, "Wanted"), make_list(leader, "Other")
    with leader.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE public.dossier WHERE (dossier_list_id = {}), "
                "public.dossier_face WHERE (dossier_list_id = {}) WITH (publish = 'insert, update, delete')"
            ).format(sql.Identifier("pgsync_list_test"), sql.Literal(wanted), sql.Literal(wanted))
        )
        in_list = _add_dossier(conn, wanted, "in")
        out_list = _add_dossier(conn, other, "out")
        # With the default identity (primary key) each of these fails for every list.
        conn.execute("UPDATE dossier SET name = 'renamed' WHERE id IN (%s, %s)", [in_list, out_list])
        conn.execute("UPDATE dossier_face SET model = 'm2'")
        conn.execute("DELETE FROM dossier WHERE id = %s", [out_list])


def test_dossier_moved_out_and_back_arrives_intact(leader: Node, subscriber_a: Node) -> None:
    wanted, other = make_list(leader, "Wanted"), make_list(leader, "Other")
    (
        make_list(subscriber_a, "Wanted"),
        make_list(subscriber_a, "Other"),
    )  # same ids on both sides: no remapping here
    with subscriber_a.connect() as conn:
        # What a Subscriber's setup does: look rows up by primary key (docs/design-notes.md).
        conn.execute("ALTER TABLE dossier REPLICA IDENTITY DEFAULT")
        conn.execute("ALTER TABLE dossier_face REPLICA IDENTITY DEFAULT")
    with leader.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION p FOR TABLE public.dossier WHERE (dossier_list_id = {0}), "
                "public.dossier_face WHERE (dossier_list_id = {0}) WITH (publish = 'insert, update, delete')"
            ).format(sql.Literal(wanted))
        )
        keep = _add_dossier(conn, wanted, "stays", faces=1)
        mover = _add_dossier(conn, wanted, "moves", faces=3)
        _add_dossier(conn, other, "never", faces=1)
    leader_conninfo = psycopg.conninfo.make_conninfo(
        host=leader.cluster.host,
        port=leader.cluster.port,
        dbname=leader.dbname,
        user=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )
    with subscriber_a.connect() as conn:
        conn.execute(
            sql.SQL("CREATE SUBSCRIPTION s CONNECTION {} PUBLICATION p").format(sql.Literal(leader_conninfo))
        )

    def counts() -> tuple[int, int]:
        row = subscriber_a.execute(
            "SELECT (SELECT count(*) FROM dossier) AS d, (SELECT count(*) FROM dossier_face) AS f"
        )[0]
        return (row["d"], row["f"])

    wait_until(lambda: counts() == (2, 4), "the initial copy")
    with leader.connect() as conn:
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [other, mover])
    wait_until(lambda: counts() == (1, 1), "the moved-out dossier and its faces to leave")
    with leader.connect() as conn:
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [wanted, mover])
        conn.execute("UPDATE dossier SET comment = 'still here' WHERE id = %s", [keep])
    wait_until(lambda: counts() == (2, 4), "the moved-back dossier and its faces")
    leader_faces = leader.execute(
        "SELECT id, embedding, model FROM dossier_face WHERE dossier_id = %s ORDER BY id", [mover]
    )
    subscriber_faces = subscriber_a.execute(
        "SELECT id, embedding, model FROM dossier_face WHERE dossier_id = %s ORDER BY id", [mover]
    )
    assert subscriber_faces == leader_faces
    wait_until(
        lambda: (
            subscriber_a.execute("SELECT comment FROM dossier WHERE id = %s", [keep])[0]["comment"]
            == "still here"
        ),
        "the update of an untouched dossier",
    )
    assert not subscriber_a.execute("SELECT 1 FROM dossier WHERE name = 'never'")

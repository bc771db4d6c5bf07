"""The Alembic history round-trips and produces exactly the models (no drift)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pgsync_dossier import migrations
from pgsync_dossier.models import metadata
from tests.harness import Node, Site, write_config


def _tables(node: Node) -> set[str]:
    rows = node.execute(
        "SELECT schemaname || '.' || tablename AS t FROM pg_tables "
        "WHERE schemaname IN ('public', 'pgsync') AND tablename <> 'alembic_version'"
    )
    return {row["t"] for row in rows}


def test_upgrade_downgrade_upgrade_round_trip(leader: Node) -> None:
    head = migrations.head_revision()
    assert migrations.current_revision(leader.url) == head
    populated = _tables(leader)
    assert {"public.dossier", "public.dossier_face", "pgsync.heartbeat", "pgsync.link"} <= populated

    assert migrations.migrate(leader.url, "base") == (head, None)
    assert _tables(leader) == set()
    assert not leader.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'pgsync'")
    assert not leader.execute("SELECT 1 FROM pg_proc WHERE proname = 'dossier_face_fill_list'")

    assert migrations.migrate(leader.url, "0001") == (None, "0001")
    assert migrations.migrate(leader.url) == ("0001", head)
    assert _tables(leader) == populated
    assert migrations.migrate(leader.url) == (head, head)  # idempotent


def test_catalog_matches_models(leader: Node) -> None:
    with migrations.sqlalchemy_connection(leader.url) as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, parent: (
                    type_ != "schema" or name in (None, "public", "pgsync")
                ),
            },
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_replica_identity_and_storage(leader: Node) -> None:
    identity = {
        row["relname"]: (row["relreplident"], row["index"])
        for row in leader.execute(
            """
            SELECT c.relname, c.relreplident, i.indexrelid::regclass::text AS index
              FROM pg_class c LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisreplident
             WHERE c.relname IN ('dossier', 'dossier_face', 'heartbeat')
            """
        )
    }
    assert identity["dossier"] == ("i", "dossier_id_dossier_list_id_key")
    assert identity["dossier_face"] == ("i", "dossier_face_id_dossier_list_id_key")
    assert identity["heartbeat"] == ("d", None)  # its primary key is the row filter's column
    storage = {
        row["attname"]: row["attstorage"]
        for row in leader.execute(
            "SELECT attname, attstorage FROM pg_attribute "
            "WHERE attrelid = 'public.dossier_face'::regclass AND attname IN ('embedding', 'model')"
        )
    }
    assert storage == {"embedding": "m", "model": "m"}


def test_application_inserts_with_defaults_only(leader: Node) -> None:
    with leader.connect() as conn:
        list_id = conn.execute("INSERT INTO dossier_list (name) VALUES ('Wanted') RETURNING id").fetchone()[
            "id"
        ]
        dossier = conn.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'Jane') RETURNING *", [list_id]
        ).fetchone()
        assert dossier["active"] is True and dossier["comment"] == "" and dossier["id"] is not None
        face = conn.execute(
            "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, %s, 'm1') RETURNING *",
            [dossier["id"], b"\x01" * 2048],
        ).fetchone()
        assert face["dossier_list_id"] == list_id
        before = dossier["modified_at"]
        conn.execute("SELECT pg_sleep(0.01)")
        after = conn.execute(
            "UPDATE dossier SET name = 'Jane D.' WHERE id = %s RETURNING modified_at", [dossier["id"]]
        ).fetchone()["modified_at"]
        assert after > before
        import psycopg
        import pytest

        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
            conn.execute(
                "INSERT INTO dossier_face (dossier_id, embedding, model) "
                "VALUES (gen_random_uuid(), '\\x00', 'm1')"
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, %s, 'm1')",
                [dossier["id"], b"\x00" * 8000],
            )


def test_moving_a_dossier_moves_its_faces(leader: Node) -> None:
    with leader.connect() as conn:
        a, b = (
            conn.execute("INSERT INTO dossier_list (name) VALUES (%s) RETURNING id", [n]).fetchone()["id"]
            for n in ("A", "B")
        )
        dossier_id = conn.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'x') RETURNING id", [a]
        ).fetchone()["id"]
        conn.execute(
            "INSERT INTO dossier_face (dossier_id, embedding, model) "
            "VALUES (%s, '\\x01', 'm'), (%s, '\\x02', 'm')",
            [dossier_id, dossier_id],
        )
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [b, dossier_id])
        lists = conn.execute("SELECT DISTINCT dossier_list_id FROM dossier_face").fetchall()
        assert lists == [{"dossier_list_id": b}]


def test_migrate_command(leader: Node, tmp_path: Path) -> None:
    site = Site(leader, write_config(tmp_path / "node.yaml", leader, "leader"))
    head = migrations.head_revision()
    assert site.ok("migrate", "--json").json() == {"from": head, "to": head, "changed": False}
    down = site.ok("migrate", "--to", "0001", "--json").json()
    assert down == {"from": head, "to": "0001", "changed": True}
    assert "schema at " + head in site.ok("migrate").stdout
    bad = site.cli("migrate", "--to", "nope")
    assert bad.exit_code == 2 and "unknown revision 'nope'" in bad.stderr
    unreachable = Site(
        leader, write_config(tmp_path / "x.yaml", leader, "leader", database_url="postgresql://127.0.0.1:1/x")
    )
    down_server = unreachable.cli("migrate")
    assert down_server.exit_code == 4 and "cannot reach" in down_server.stderr

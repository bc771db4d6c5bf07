"""Version-1 links (one publication, subscription and slot per list) become groups in place.

The version-1 state is built as version 1 left it on both sides: its catalog at revision
0003, a per-list publication and registration on the Leader, a per-list subscription with its
slot, and replicas that are a little behind their Leader lists. Then, as the runbook says:
`migrate` both nodes, `setup` the Leader, `setup` the Subscriber.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgsync_dossier import migrations
from tests.harness import (
    Site,
    add_dossiers,
    assert_converged,
    group_names,
    list_rows,
    make_list,
    wait_for_same,
)


def _leader_id(leader: Site) -> str:
    row = leader.node.execute(
        "SELECT (SELECT system_identifier::text FROM pg_control_system()) || '/' || current_database() AS id"
    )
    return str(row[0]["id"])


def _version_one_link(leader: Site, sub: Site, remote: int, local: int, tag: str) -> str:
    """What version 1's attach left behind for one list, its initial copy done."""
    name = f"pgsync_l{remote}_{tag}_t{local}"
    publication = f"pgsync_list_{remote}"
    with leader.node.connect() as conn:
        conn.execute("INSERT INTO pgsync.heartbeat (list_id) VALUES (%s)", [remote])
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE public.dossier WHERE (dossier_list_id = {l}), "
                "public.dossier_face WHERE (dossier_list_id = {l}), pgsync.heartbeat WHERE (list_id = {l}) "
                "WITH (publish = 'insert, update, delete')"
            ).format(sql.Identifier(publication), l=sql.Literal(remote))
        )
        conn.execute(
            "INSERT INTO pgsync.publication (list_id, publication_name) VALUES (%s, %s)",
            [remote, publication],
        )
        conn.execute(
            "INSERT INTO pgsync.subscriber_link (slot_name, list_id, subscriber_node, subscriber_list_id) "
            "VALUES (%s, %s, 'subscriber_a site', %s)",
            [name, remote, local],
        )
    dossiers, faces = _rows(leader, remote)
    with sub.node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for row in dossiers:
            conn.execute(
                "INSERT INTO dossier (id, dossier_list_id, name, comment, active, created_at, "
                "modified_at) VALUES (%(id)s, %(list)s, %(name)s, %(comment)s, %(active)s, "
                "%(created_at)s, %(modified_at)s)",
                {**row, "list": local},
            )
        for row in faces:
            conn.execute(
                "INSERT INTO dossier_face (id, dossier_id, dossier_list_id, embedding, model, created_at) "
                "VALUES (%(id)s, %(dossier_id)s, %(list)s, %(embedding)s, %(model)s, %(created_at)s)",
                {**row, "list": local},
            )
        conn.execute(
            "INSERT INTO pgsync.link (local_list_id, remote_list_id, leader_url, leader_id, "
            "leader_node_name, subscription_name, slot_name, state) "
            "VALUES (%s, %s, %s, %s, 'leader site', %s, %s, 'ready')",
            [local, remote, leader.leader_url, _leader_id(leader), name, name],
        )
    sub.node.execute(
        sql.SQL(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false, enabled = false)"
        ).format(sql.Identifier(name), sql.Literal(leader.node.url), sql.Identifier(publication))
    )
    return name


def _rows(site: Site, list_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        site.node.execute("SELECT * FROM dossier WHERE dossier_list_id = %s ORDER BY id", [list_id]),
        site.node.execute("SELECT * FROM dossier_face WHERE dossier_list_id = %s ORDER BY id", [list_id]),
    )


def test_version_one_links_are_converted_in_place(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    first, second = make_list(leader.node, "First"), make_list(leader.node, "Second")
    ids = add_dossiers(leader.node, first, 5)
    add_dossiers(leader.node, second, 3)
    make_list(sub.node, "padding")
    first_local, second_local = make_list(sub.node, "First replica"), make_list(sub.node, "Second replica")
    for site in (leader, sub):
        migrations.migrate(site.node.url, "0003")
    legacy = [
        _version_one_link(leader, sub, first, first_local, "0a1b2c3d"),
        _version_one_link(leader, sub, second, second_local, "0a1b2c3d"),
    ]
    # What version 1 had not replicated yet when it was stopped.
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET comment = 'changed after v1' WHERE id = %s", [ids[0]])
        conn.execute("DELETE FROM dossier WHERE id = %s", [ids[1]])
    add_dossiers(leader.node, first, 2, prefix="after-v1-")

    for site in (leader, sub):
        assert site.ok("migrate", "--json").json()["to"] == migrations.head_revision()
    assert not any(row["subenabled"] for row in sub.node.execute("SELECT subenabled FROM pg_subscription"))
    leader.ok("setup")
    result = sub.ok("setup", "--json").json()
    assert sorted(result["upgraded_lists"]) == [first_local, second_local] and result["upgrade_pending"] == []

    # verify=False: verify syncs, and what follows reads what setup alone left behind.
    pairs = [(first, first_local), (second, second_local)]
    assert_converged(leader, sub, pairs, outside={"dossier": 0, "dossier_face": 0}, verify=False)
    subscriptions = {row["subname"] for row in sub.node.execute("SELECT subname FROM pg_subscription")}
    assert subscriptions == set(group_names(sub)) and len(subscriptions) == 1
    slots = {row["slot_name"] for row in leader.node.execute("SELECT slot_name FROM pg_replication_slots")}
    assert slots == subscriptions and not slots & set(legacy)
    publications = {row["pubname"] for row in leader.node.execute("SELECT pubname FROM pg_publication")}
    assert publications == subscriptions
    assert not leader.node.execute("SELECT * FROM pgsync.subscriber_link")
    assert not leader.node.execute("SELECT * FROM pgsync.publication")
    assert not sub.node.execute("SELECT * FROM pgsync.link WHERE legacy_subscription IS NOT NULL")
    # And the group streams from here on.
    add_dossiers(leader.node, second, 1, prefix="after-upgrade-")
    wait_for_same(leader.node, second, sub.node, second_local)
    assert_converged(leader, sub, pairs, outside={"dossier": 0, "dossier_face": 0})


def test_an_upgrade_with_the_leader_down_is_finished_by_tick(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    for site in (leader, sub):
        migrations.migrate(site.node.url, "0003")
    _version_one_link(leader, sub, remote, local, "0a1b2c3d")
    for site in (leader, sub):
        site.ok("migrate")
    leader.ok("setup")
    leader.node.cluster.stop()
    try:
        result = sub.ok("setup", "--json").json()
        assert result["upgraded_lists"] == [] and [p["local_list"] for p in result["upgrade_pending"]] == [
            local
        ]
        assert len(list_rows(sub.node, local)[0]) == 3  # the replica keeps its rows meanwhile
    finally:
        leader.node.cluster.start()
    add_dossiers(leader.node, remote, 1, prefix="later-")
    assert sub.run("tick").exit_code == 0
    assert_converged(leader, sub, [(remote, local)], verify=False)  # tick alone converged it
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1
    assert_converged(leader, sub, [(remote, local)])  # and verify agrees with the oracle


def test_migrations_keep_version_one_registrations_readable(sites: dict[str, Site]) -> None:
    """The Leader keeps version 1's registry tables until every Subscriber has upgraded."""
    leader = sites["leader"]
    tables = {
        row["tablename"]
        for row in leader.node.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'pgsync'")
    }
    assert {"publication", "subscriber_link", "group_registration", "sync_group"} <= tables
    with psycopg.connect(leader.node.url) as conn:
        assert conn.execute("SELECT count(*) FROM pgsync.subscriber_link").fetchone() == (0,)

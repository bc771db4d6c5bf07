"""Sites migrate one at a time: a rolling upgrade in both orders under the Leader's writes.

The next revisions are test-only migrations (tests/next_revision, never shipped): 9000 adds
a nullable column to each table, which the application writes as soon as the Leader has it;
9001 adds a column every dossier must have (NOT NULL, no default). A group's publication
names only the columns both nodes have, so neither order of 9000 pauses anything:
Subscribers first, the apply fills their new column with NULL until the Leader has it;
Leader first, its new column is not published until the Subscriber has it too. Either way,
once both have it the lists are copied again in place, which carries the values written
meanwhile. A required column only the Subscriber has cannot be absorbed: the Subscriber
pauses with `schema_mismatch` (exit 3, both revisions and the node to migrate named) until
the Leader migrates; the slot keeps every change meanwhile, and the next `tick` resumes.
The oracle judges every row and column, the new ones included.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from alembic.config import Config as AlembicConfig
from psycopg import sql

from alembic import command
from pgsync_dossier import migrations
from pgsync_dossier.copier import COLUMNS
from pgsync_dossier.resources import alembic_dir
from tests.harness import (
    FACE_MODEL,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    make_list,
    oracle_verdict,
    wait_until,
)

NEXT_REVISION = "9000"
REQUIRED = "9001"
NEXT_REVISION_DIR = Path(__file__).resolve().parents[1] / "next_revision"
INSERT = "INSERT INTO dossier (dossier_list_id, name, comment) VALUES (%s, %s, 'live') RETURNING id"
INSERT_REQUIRED = (
    "INSERT INTO dossier (dossier_list_id, name, comment, badge) VALUES (%s, %s, 'live', %s) RETURNING id"
)
HAS_COLUMN = "SELECT 1 FROM pg_attribute WHERE attrelid = 'dossier'::regclass AND attname = %s"


def migrate_to_next(node: Node, revision: str = NEXT_REVISION) -> None:
    """`pgsync-dossier migrate` of a version that ships the next revision."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(alembic_dir()))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option(
        "version_locations", os.pathsep.join([str(alembic_dir() / "versions"), str(NEXT_REVISION_DIR)])
    )
    with migrations.sqlalchemy_connection(node.url) as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        connection.commit()


@contextmanager
def writing(leader: Node, list_id: int) -> Iterator[dict[str, object]]:
    """The Leader's application, writing all along: a new dossier with a face, and an edit of
    an older one, every 20 ms; the new columns are written once the Leader has them."""
    state: dict[str, object] = {"written": 0, "errors": []}
    stop = threading.Event()

    def run() -> None:
        with leader.connect() as conn:
            while not stop.is_set():
                try:
                    has_next = bool(conn.execute(HAS_COLUMN, ["nickname"]).fetchone())
                    required = bool(conn.execute(HAS_COLUMN, ["badge"]).fetchone())
                    n = int(state["written"])  # type: ignore[call-overload]
                    row = conn.execute(
                        INSERT_REQUIRED if required else INSERT,
                        [list_id, f"live {n}", *(["gold"] if required else [])],
                    ).fetchone()
                    assert row is not None
                    face = conn.execute(
                        "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, '\\x00ff', %s) "
                        "RETURNING id",
                        [row["id"], FACE_MODEL],
                    ).fetchone()
                    assert face is not None
                    if has_next:  # what the application does with the new columns
                        conn.execute(
                            "UPDATE dossier SET nickname = %s WHERE id = %s", [f"nick {n}", row["id"]]
                        )
                        conn.execute("UPDATE dossier_face SET quality = 0.5 WHERE id = %s", [face["id"]])
                    conn.execute(
                        "UPDATE dossier SET comment = %s WHERE id = "
                        "(SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY random() LIMIT 1)",
                        [f"edited {n}", list_id],
                    )
                    state["written"] = n + 1
                except psycopg.errors.NotNullViolation:
                    pass  # the application wrote as 9001 came in: it writes the new way next time
                except Exception as exc:
                    errors = state["errors"]
                    assert isinstance(errors, list)
                    errors.append(repr(exc))
                time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=10)
    assert state["errors"] == [], state["errors"]


def _replicating(sites: dict[str, Site]) -> tuple[Site, Site, list[tuple[int, int]]]:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote = make_list(leader.node, "watch")
    add_dossiers(leader.node, remote, 10)
    local = make_list(sub.node, "replica")
    attach(sub, leader, remote, local)
    return leader, sub, [(remote, local)]


def test_subscribers_first_never_pause(sites: dict[str, Site]) -> None:
    leader, sub, pairs = _replicating(sites)
    with writing(leader.node, pairs[0][0]) as written:
        migrate_to_next(sub.node)
        sub.ok("sync", "--all")  # a column only the Subscriber has: the stream goes on
        migrate_to_next(leader.node)
        time.sleep(0.5)  # the application writes the new columns
        sub.ok("sync", "--all")
        assert sub.cli("tick").exit_code == 0
    sub.ok("sync", "--all")
    assert int(written["written"]) > 10  # type: ignore[call-overload]
    assert_converged(leader, sub, pairs)
    nicknames = sub.node.execute(
        "SELECT count(nickname) AS n FROM dossier WHERE dossier_list_id = %s", [pairs[0][1]]
    )
    assert nicknames[0]["n"] > 0, "the new column's values reached the replica"


def published_columns(leader: Site, sub: Site) -> set[str]:
    (group,) = sub.node.execute("SELECT name FROM pgsync.sync_group")
    rows = leader.node.execute(
        "SELECT unnest(attnames) AS c FROM pg_publication_tables "
        "WHERE pubname = %s AND tablename = 'dossier'",
        [group["name"]],
    )
    return {row["c"] for row in rows}


def test_leader_first_never_pauses_either(sites: dict[str, Site]) -> None:
    leader, sub, pairs = _replicating(sites)
    with writing(leader.node, pairs[0][0]) as written:
        migrate_to_next(leader.node)
        time.sleep(0.5)  # the application writes the new columns
        sub.ok("sync", "--all")  # a column only the Leader has is not published
        assert "nickname" not in published_columns(leader, sub)
        assert (
            sub.node.execute(
                "SELECT count(*) AS n FROM pg_stat_subscription_stats WHERE apply_error_count > 0"
            )[0]["n"]
            == 0
        )
        migrate_to_next(sub.node)
        synced = sub.ok("sync", "--all", "--json").json()
        assert [row["copied"] for row in synced] == [True], "the values written meanwhile are copied"
        assert "nickname" in published_columns(leader, sub)
        assert sub.cli("tick").exit_code == 0
    sub.ok("sync", "--all")
    assert int(written["written"]) > 10  # type: ignore[call-overload]
    assert {row["state"] for row in sub.ok("status", "--json").json()} == {"ready"}
    assert_converged(leader, sub, pairs)
    nicknames = sub.node.execute(
        "SELECT count(nickname) AS n FROM dossier WHERE dossier_list_id = %s", [pairs[0][1]]
    )
    assert nicknames[0]["n"] > 0


def test_a_required_column_pauses_with_schema_mismatch_until_the_leader_migrates(
    sites: dict[str, Site],
) -> None:
    leader, sub, pairs = _replicating(sites)
    migrate_to_next(sub.node)
    migrate_to_next(leader.node)
    sub.ok("sync", "--all")
    with writing(leader.node, pairs[0][0]) as written:
        migrate_to_next(sub.node, REQUIRED)
        synced = sub.cli("sync", "--all")
        assert synced.exit_code == 3, synced.stderr
        line = synced.stderr.strip()
        assert len(line.splitlines()) == 1 and "schema_mismatch" in sub.cli("sync", "--all", "--json").stdout
        assert f"revision {NEXT_REVISION}" in line and f"revision {REQUIRED}" in line, line
        assert "dossier.badge must be set here and the Leader may leave it empty" in line, line
        assert "run pgsync-dossier migrate on the Leader" in line, line
        assert {row["state"] for row in sub.ok("status", "--json").json()} == {"paused"}
        assert sub.node.execute("SELECT subenabled FROM pg_subscription")[0]["subenabled"] is False
        # A list attached meanwhile is refused the same way, and nothing is made for it.
        other = make_list(leader.node, "later")
        local_other = make_list(sub.node, "later replica")
        refused = sub.cli("attach", "--remote-list", str(other), "--remote-url", leader.leader_url,
                          "--local-list", str(local_other))  # fmt: skip
        assert refused.exit_code == 3 and "schemas differ" in refused.stderr, refused.stderr
        assert sub.node.execute("SELECT count(*) AS n FROM pgsync.link")[0]["n"] == 1

        migrate_to_next(leader.node, REQUIRED)
        time.sleep(0.5)  # the application writes the required column: rows the old slot holds lack it
        ticked = sub.cli("tick")  # what the timer runs: no sync by hand
        assert ticked.exit_code == 0, ticked.stderr
        assert "badge" in published_columns(leader, sub), "tick published the column both nodes now have"
        assert sub.cli("tick").exit_code == 0
    wait_until(
        lambda: oracle_verdict(leader, sub, pairs).equal, "the stream to carry the writes, through ticks", 60
    )
    assert int(written["written"]) > 10  # type: ignore[call-overload]
    assert {row["state"] for row in sub.ok("status", "--json").json()} == {"ready"}
    assert_converged(leader, sub, pairs)
    errors = sub.node.execute(
        "SELECT coalesce(sum(apply_error_count), 0) AS n FROM pg_stat_subscription_stats"
    )
    assert errors[0]["n"] >= 0  # errors before the pause are allowed; the stream is not stuck (above)


def test_a_publication_made_before_column_lists_gets_one_at_the_leaders_setup(sites: dict[str, Site]) -> None:
    """A group made by an earlier version publishes every column: were the Leader to migrate
    first, its new column would reach Subscribers that lack it. The Leader's setup names the
    columns every Subscriber has, without a re-copy."""
    leader, sub, pairs = _replicating(sites)
    (group,) = sub.node.execute("SELECT name FROM pgsync.sync_group")
    remote = pairs[0][0]
    leader.node.execute(
        sql.SQL(
            "ALTER PUBLICATION {} SET TABLE dossier WHERE (dossier_list_id IN ({l})), "
            "dossier_face WHERE (dossier_list_id IN ({l})), pgsync.heartbeat WHERE (group_name = {g})"
        ).format(sql.Identifier(group["name"]), l=sql.Literal(remote), g=sql.Literal(group["name"]))
    )
    leader.ok("setup")
    assert published_columns(leader, sub) == set(COLUMNS["dossier"])
    with writing(leader.node, remote):
        migrate_to_next(leader.node)
        time.sleep(0.5)
        synced = sub.ok("sync", "--all", "--json").json()
        assert [row["copied"] for row in synced] == [False]
    sub.ok("sync", "--all")
    assert_converged(leader, sub, pairs)


def test_the_next_revision_is_not_shipped() -> None:
    assert NEXT_REVISION not in migrations.known_revisions() and REQUIRED not in migrations.known_revisions()
    assert migrations.head_revision() == "0013", "the next revision must come after the new head: edit it"

"""Real PostgreSQL clusters for the integration tests: one Leader and two Subscribers.

The clusters live for the whole session; every test gets freshly created databases cloned
from a migrated template (pytest-postgresql's DatabaseJanitor), after the previous test's
subscriptions, slots and replication login are dropped, so tests stay independent.
Names are awkward on purpose (spaces, quotes, upper case, a password with ' @ :).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from pytest_postgresql.janitor import DatabaseJanitor

from pgsync_dossier import migrations
from pgsync_dossier.clusters import LocalCluster, find_bindir, server_version

ADMIN_USER = 'Sync Admin\'s "Role"'
ADMIN_PASSWORD = "p'@ss:w@rd \"x\""
TEMPLATE_DB = "dossier template"
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class Node:
    """A database on one of the session's clusters, reached as the awkward admin role."""

    name: str
    cluster: LocalCluster
    dbname: str

    @property
    def url(self) -> str:
        return self.cluster.tcp_url(self.dbname, ADMIN_USER, ADMIN_PASSWORD)

    def connect(self, **kwargs: Any) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, **kwargs)

    def execute(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def janitor(self, dbname: str, template: str | None = None, as_template: bool = False) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=ADMIN_USER,
            password=ADMIN_PASSWORD,
            host=self.cluster.host,
            port=self.cluster.port,
            dbname=dbname,
            template_dbname=template,
            as_template=as_template,
        )


@pytest.fixture(scope="session")
def pg_bindir(request: pytest.FixtureRequest) -> Path:
    return find_bindir(request.config.getoption("--pg-bin"))


@pytest.fixture(scope="session")
def pg_version(pg_bindir: Path) -> int:
    return int(server_version(pg_bindir).split(".")[0])


def _start_cluster(root: Path, name: str, bindir: Path) -> LocalCluster:
    cluster = LocalCluster(root / name, bindir=bindir, settings=dict(TEST_SETTINGS)).init().start()
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(ADMIN_USER), sql.Literal(ADMIN_PASSWORD)
            )
        )
    template = Node(name, cluster, TEMPLATE_DB)
    template.janitor(TEMPLATE_DB).init()
    migrations.migrate(template.url)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(TEMPLATE_DB)))
    return cluster


@pytest.fixture(scope="session")
def clusters(pg_bindir: Path) -> Iterator[dict[str, LocalCluster]]:
    # Not under pytest's private tmp dir: as root, the server user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="pgsd-tests-"))
    os.chmod(root, 0o755)
    started: dict[str, LocalCluster] = {}
    try:
        for name in ("leader", "subscriber_a", "subscriber_b"):
            started[name] = _start_cluster(root, name, pg_bindir)
        yield started
    finally:
        for cluster in started.values():
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


DB_NAMES = {
    "leader": 'Leader\'s "Dossiers" DB',
    "subscriber_a": "Subscriber A's dossiers",
    "subscriber_b": 'Subscriber "B" DOSSIERS',
}


def _reset(nodes: dict[str, Node]) -> None:
    """Drop what replication left behind, in the only order PostgreSQL allows."""
    for name, node in nodes.items():
        if name == "leader" or not node.cluster.is_running():
            continue
        with psycopg.connect(node.cluster.conninfo(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [node.dbname]).fetchone():
                continue
        with psycopg.connect(node.cluster.conninfo(node.dbname), autocommit=True) as conn:
            for (subname,) in conn.execute("SELECT subname FROM pg_subscription").fetchall():
                ident = sql.Identifier(subname)
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    leader = nodes["leader"].cluster
    if not leader.is_running():
        leader.start()
    with psycopg.connect(leader.conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL"
        )
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
            for _ in range(50):
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    break
                except psycopg.errors.ObjectInUse:
                    import time

                    time.sleep(0.1)
    for node in nodes.values():
        if not node.cluster.is_running():
            node.cluster.start()
        node.janitor(node.dbname).drop()
    with psycopg.connect(leader.conninfo(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pgsync_replicator")


@pytest.fixture
def nodes(clusters: dict[str, LocalCluster]) -> Iterator[dict[str, Node]]:
    """Fresh migrated databases on the Leader and both Subscribers."""
    made = {name: Node(name, cluster, DB_NAMES[name]) for name, cluster in clusters.items()}
    _reset(made)
    for node in made.values():
        node.janitor(node.dbname, template=TEMPLATE_DB).init()
    yield made
    _reset(made)


@pytest.fixture
def leader(nodes: dict[str, Node]) -> Node:
    return nodes["leader"]


@pytest.fixture
def subscriber_a(nodes: dict[str, Node]) -> Node:
    return nodes["subscriber_a"]


@pytest.fixture
def subscriber_b(nodes: dict[str, Node]) -> Node:
    return nodes["subscriber_b"]

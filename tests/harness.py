"""Real PostgreSQL clusters for the integration and fault tests: one Leader, two Subscribers.

The clusters live for the whole session; every test gets freshly created databases cloned
from a migrated template (pytest-postgresql's DatabaseJanitor), after the previous test's
subscriptions, slots and replication login are dropped, so tests stay independent.
Names are awkward on purpose (spaces, quotes, upper case, a password with ' @ :).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from pytest_postgresql.janitor import DatabaseJanitor

from pgsync_dossier import migrations
from pgsync_dossier.cli import cli
from pgsync_dossier.clusters import LocalCluster, find_bindir, free_port, server_version
from pgsync_dossier.faults import FAULT_ENV
from tests import oracle

ADMIN_USER = 'Sync Admin\'s "Role"'
ADMIN_PASSWORD = 'p\'@ss:w@rd "x"'
TEMPLATE_DB = "dossier template"
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


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


#: PostgreSQL's own defaults for what limits the number of streams a Subscriber can run.
DEFAULT_WORKER_SETTINGS = {
    "max_worker_processes": "8",
    "max_logical_replication_workers": "4",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
}


def _start_cluster(root: Path, name: str, bindir: Path, **settings: str) -> LocalCluster:
    cluster = LocalCluster(root / name, bindir=bindir, settings={**TEST_SETTINGS, **settings}).init().start()
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


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def start_standby(
    primary: LocalCluster, directory: Path, bindir: Path, *, slot: str | None, **settings: str
) -> LocalCluster:
    """A physical standby of `primary`, as a DBA makes one: `pg_basebackup` (through the
    physical `slot`, made here, unless None), streaming with these extra settings."""
    if slot is not None:
        with psycopg.connect(primary.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", [slot])
    directory.mkdir()
    primary._hand_over(directory)
    upstream = make_conninfo(
        host=primary.host, port=primary.port, user=ADMIN_USER, password=ADMIN_PASSWORD, dbname="postgres"
    )
    primary._run(
        "pg_basebackup", "--pgdata", str(directory / "data"), "--wal-method", "stream",
        "--checkpoint", "fast", "--dbname", upstream, *([] if slot is None else ["--slot", slot]),
    )  # fmt: skip
    wanted = {**TEST_SETTINGS, "primary_conninfo": _conf_string(upstream), **settings}
    if slot is not None:
        wanted["primary_slot_name"] = _conf_string(slot)
    standby = LocalCluster(directory, bindir=bindir, settings=wanted).init()
    standby._write_as_owner(standby.datadir / "standby.signal", "")
    return standby.start()


def replayed(primary: LocalCluster, standby: LocalCluster) -> bool:
    """The standby has replayed everything the primary wrote so far."""
    with psycopg.connect(primary.conninfo(), autocommit=True) as conn:
        (written,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
    with psycopg.connect(standby.conninfo(), autocommit=True) as conn:
        (ahead,) = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0", [written]
        ).fetchone()  # type: ignore[misc]
    return bool(ahead)


@pytest.fixture(scope="session")
def cluster_root() -> Iterator[Path]:
    # Not under pytest's private tmp dir: as root, the server user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="pgsd-tests-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def clusters(pg_bindir: Path, cluster_root: Path) -> Iterator[dict[str, LocalCluster]]:
    started: dict[str, LocalCluster] = {}
    try:
        for name in ("leader", "subscriber_a", "subscriber_b"):
            started[name] = _start_cluster(cluster_root, name, pg_bindir)
        yield started
    finally:
        for cluster in started.values():
            cluster.remove()


@pytest.fixture(scope="session")
def defaults_cluster(pg_bindir: Path, cluster_root: Path) -> Iterator[LocalCluster]:
    """A fourth cluster, started only for the tests that ask for it, with PostgreSQL's default
    limits on workers, slots and origins (the ones this project's clusters raise)."""
    cluster = _start_cluster(cluster_root, "defaults", pg_bindir, **DEFAULT_WORKER_SETTINGS)
    yield cluster
    cluster.remove()


@pytest.fixture
def default_subscriber(
    nodes: dict[str, Node], defaults_cluster: LocalCluster, tmp_path: Path
) -> Iterator[Site]:
    """A Subscriber, set up, on the cluster with default limits (with the usual Leader)."""
    node = Node("defaults", defaults_cluster, "Defaults' dossiers")
    drop_subscriptions(node)
    node.janitor(node.dbname).drop()
    node.janitor(node.dbname, template=TEMPLATE_DB).init()
    site = Site(node, write_config(tmp_path / "defaults.yaml", node, "subscriber"))
    site.ok("setup")
    yield site
    drop_subscriptions(node)
    node.janitor(node.dbname).drop()


DB_NAMES = {
    "leader": 'Leader\'s "Dossiers" DB',
    "subscriber_a": "Subscriber A's dossiers",
    "subscriber_b": 'Subscriber "B" DOSSIERS',
}


def drop_subscriptions(node: Node) -> None:
    """A Subscriber's subscriptions, without touching slots (the Leader's are dropped apart)."""
    if not node.cluster.is_running():
        return
    with psycopg.connect(node.cluster.conninfo(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [node.dbname]).fetchone():
            return
    with psycopg.connect(node.cluster.conninfo(node.dbname), autocommit=True) as conn:
        for (subname,) in conn.execute(
            "SELECT subname FROM pg_subscription "
            "WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall():
            ident = sql.Identifier(subname)
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


def drop_slots(cluster: LocalCluster) -> None:
    """Every slot of the cluster, the streams that hold them ended first."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL"
        )
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
            for _ in range(50):
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1)
            else:
                raise AssertionError(f"slot {slot} stayed in use for 5 s: drop its subscriber's stream first")


def _reset(nodes: dict[str, Node]) -> None:
    """Drop what replication left behind, in the only order PostgreSQL allows."""
    for name, node in nodes.items():
        if name != "leader":
            drop_subscriptions(node)
    for node in nodes.values():
        if not node.cluster.is_running():
            node.cluster.start()
        # A relay (a Subscriber that publishes on) holds its downstream's slots.
        drop_slots(node.cluster)
        node.janitor(node.dbname).drop()
    with psycopg.connect(nodes["leader"].cluster.conninfo(), autocommit=True) as conn:
        for (role,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('pgsync_replicator', 'pgsync_enroll') "
            "OR rolname LIKE 'pgsync\\_s\\_%' ORDER BY rolname"
        ).fetchall():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.execute("DROP ROLE IF EXISTS pgsync_subscriber")


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


# -- configured nodes and the CLI -------------------------------------------------------------
TOKEN = "Sync-Token-For-Tests-" + "0123456789abcdef" * 3
EXECUTABLE = str(Path(sys.executable).with_name("pgsync-dossier"))
FACE_MODEL = "arcface-r100 v2"
#: A schedule whose window never opens during a test: the group syncs only when told to.
NIGHTLY = "FREQ=DAILY;BYHOUR=3"
#: What a process killed by a fault point exits with.
KILLED = -signal.SIGKILL


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Site:
    """A node with its config file: what a DBA has on each host."""

    node: Node
    config_path: Path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        result = CliRunner().invoke(cli, ["--config", str(self.config_path), *args], env=env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str) -> CliResult:
        result = self.cli(*args)
        assert result.exit_code == 0, f"{args} failed ({result.exit_code}): {result.stderr}"
        return result

    def run(
        self, *args: str, fault: str | None = None, timeout_s: float = 300, env: dict[str, str] | None = None
    ) -> CliResult:
        """The installed entry point in its own process, as a user or a timer runs it; with
        `fault`, the process is killed (SIGKILL) at that named point."""
        env = {key: value for key, value in {**os.environ, **(env or {})}.items() if key != FAULT_ENV}
        if fault:
            env[FAULT_ENV] = fault
        done = subprocess.run(
            [EXECUTABLE, "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    @property
    def leader_url(self) -> str:
        """The URL a Subscriber is given for this node: no password, the token login is used."""
        return self.node.cluster.tcp_url(self.node.dbname, "unused").replace("unused@", "")


def own_login_passwords(sub: Site) -> list[str]:
    """The passwords of a Subscriber's own Leader logins, as its server keeps them (to prove
    that none of them ever leaks)."""
    rows = sub.node.execute(
        "SELECT pg_read_file(current_setting('data_directory') || '/' || f) AS line "
        "FROM pg_ls_dir(current_setting('data_directory')) AS f "
        "WHERE f LIKE '%.pgpass' AND strpos(f, (SELECT node_tag FROM pgsync.node)) > 0"
    )
    return sorted({row["line"].rstrip("\n").split(":", 4)[4] for row in rows})


def write_config(path: Path, node: Node, role: str, **overrides: Any) -> Path:
    values: dict[str, Any] = {
        "role": role,
        "node_name": f"{node.name} site",
        "database_url": node.url,
        "sync_token": TOKEN,
        "face_model": FACE_MODEL,
    }
    values.update(overrides)
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    return path


@pytest.fixture
def sites(nodes: dict[str, Node], tmp_path: Path) -> dict[str, Site]:
    """Leader and both Subscribers configured and set up, as after the runbook's first steps."""
    made = {}
    for name, node in nodes.items():
        role = "leader" if name == "leader" else "subscriber"
        site = Site(node, write_config(tmp_path / f"{name}.yaml", node, role))
        site.ok("setup")
        made[name] = site
    return made


def attach_args(url: str, remote: int, local: int) -> tuple[str, ...]:
    """The arguments of `attach`: Leader list `remote` at `url` into local list `local`."""
    return ("attach", "--remote-list", str(remote), "--remote-url", url, "--local-list", str(local))


def attach(sub: Site, leader: Site, remote: int, local: int, *extra: str) -> dict[str, Any]:
    """`attach` through the CLI, as a user runs it; its JSON result."""
    result = sub.ok(
        *attach_args(leader.leader_url, remote, local),
        "--json",
        *extra,
    )
    data: dict[str, Any] = result.json()
    return data


def group_names(sub: Site) -> list[str]:
    return [row["name"] for row in sub.node.execute("SELECT name FROM pgsync.sync_group ORDER BY id")]


def make_list(node: Node, name: str) -> int:
    return int(node.execute("INSERT INTO dossier_list (name) VALUES (%s) RETURNING id", [name])[0]["id"])


def add_dossiers(node: Node, list_id: int, count: int, faces_each: int = 2, prefix: str = "d") -> list[Any]:
    ids = []
    with node.connect() as conn:
        for n in range(count):
            dossier_id = conn.execute(
                "INSERT INTO dossier (dossier_list_id, name, comment) VALUES (%s, %s, %s) RETURNING id",
                [list_id, f"{prefix}{n}", f"comment {n}"],
            ).fetchone()["id"]
            for _ in range(faces_each):
                conn.execute(
                    "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, %s, %s)",
                    [dossier_id, os.urandom(2048), FACE_MODEL],
                )
            ids.append(dossier_id)
    return ids


def list_rows(node: Node, list_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A list's dossiers and faces, without the list id (it differs between Leader and replica)."""
    dossiers = node.execute(
        "SELECT id, name, comment, active, created_at, modified_at FROM dossier "
        "WHERE dossier_list_id = %s ORDER BY id",
        [list_id],
    )
    faces = node.execute(
        "SELECT id, dossier_id, embedding, model, created_at FROM dossier_face "
        "WHERE dossier_list_id = %s ORDER BY id",
        [list_id],
    )
    return dossiers, faces


def wait_until(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value {last!r}")


def _node(side: Site | Node) -> Node:
    return side.node if isinstance(side, Site) else side


def oracle_verdict(
    leader: Site | Node, replica: Site | Node, pairs: list[tuple[int, int]]
) -> oracle.Convergence:
    """What the SQL oracle finds: every (Leader list, replica) pair compared row by row, column
    by column, and the faces apart from their dossier on both sides."""
    with _node(leader).connect() as on_leader, _node(replica).connect() as on_replica:
        return oracle.convergence(on_leader, on_replica, pairs)


def rows_outside(replica: Site | Node, lists: list[int]) -> dict[str, int]:
    """Dossiers and faces the node holds outside `lists`, by table."""
    with _node(replica).connect() as conn:
        return oracle.rows_outside(conn, lists)


def assert_converged(
    leader: Site | Node,
    replica: Site | Node,
    pairs: list[tuple[int, int]],
    *,
    outside: dict[str, int] | None = None,
    verify: bool = True,
) -> oracle.Convergence:
    """The judge of convergence: the oracle must find each replica of `pairs` equal to its
    Leader list and no face apart from its dossier on either side; with `outside`, the replica's
    node must hold exactly that many rows per table outside the replicas (a leak shows there).
    Then, with `verify`, the product's own `verify --json` is checked against that verdict
    (verify_agrees). With no pairs there is nothing to compare: `outside` is then required."""
    assert pairs or outside is not None, "with no replicas to compare, say what the node holds (outside=)"
    found = oracle_verdict(leader, replica, pairs)
    assert found.equal, "the oracle found differences:\n  " + "\n  ".join(found.problems())
    if outside is not None:
        assert rows_outside(replica, [local for _remote, local in pairs]) == outside
    if verify and pairs:
        assert isinstance(replica, Site), "verify runs on a configured Site: pass one, or verify=False"
        verify_agrees(replica, pairs)
    return found


def verify_agrees(replica: Site, pairs: list[tuple[int, int]]) -> None:
    """The product's `verify --json`, under test, against what the oracle found: every replica
    of `pairs` (all of this Subscriber's, from whichever Leaders) reported matching its Leader
    list, none left out and none more; exit 0."""
    result = replica.cli("verify", "--json")
    assert result.exit_code == 0, (
        f"verify disagrees with the oracle (exit {result.exit_code}): {result.stderr}"
    )
    reported = {int(row["local_list"]): (int(row["remote_list"]), row["match"]) for row in result.json()}
    expected = {local: (remote, True) for remote, local in pairs}
    assert reported == expected, f"verify disagrees with the oracle: {reported}, expected {expected}"


def wait_for_backend(
    node: Site | Node,
    what: str,
    *,
    query_like: str = "%",
    wait_event_type: str | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Until another session of the node's database has run a statement like `query_like`
    (pg_stat_activity keeps a session's last statement while it is idle, so a polling loop is
    seen between its polls) and, with `wait_event_type` ('Lock': waiting for a lock), is
    waiting on that. This is how a test knows that a command reached the step it must meet,
    instead of sleeping and hoping."""
    query = (
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query LIKE %(like)s "
        "AND (%(event)s::text IS NULL OR wait_event_type = %(event)s)"
    )
    target = _node(node)
    wait_until(
        lambda: target.execute(query, {"like": query_like, "event": wait_event_type})[0]["n"] > 0,
        what,
        timeout_s,
    )


def first_sync_over(sub: Site) -> None:
    """Until the API's background first sync has finished and left: GET shows 'ready' as soon
    as the copy is done, while that sync still holds the group for its barrier (a verify then
    finds the group busy). Over means a finished 'creation' run and no session of the product
    left on the Subscriber's database (the group's lock is a session lock)."""
    query = (
        "SELECT (SELECT count(*) FROM pgsync.sync_run WHERE reason = 'creation' AND finished_at IS NOT NULL) "
        "AS finished, (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name LIKE 'pgsync-dossier%') AS sessions"
    )
    wait_until(
        lambda: (row := sub.node.execute(query)[0])["finished"] > 0 and row["sessions"] == 0,
        "the background first sync to finish",
    )


def wait_for_same(leader: Node, remote: int, replica: Node, local: int, timeout_s: float = 30.0) -> None:
    """Until the oracle finds replica `local` equal to Leader list `remote` (the list alone: a
    poll, so not the whole-database check of faces apart, which assert_converged makes)."""

    def same() -> bool:
        with leader.connect() as on_leader, replica.connect() as on_replica:
            return oracle.compare_list(on_leader, remote, on_replica, local).equal

    wait_until(same, f"list {local} to match Leader list {remote}", timeout_s)


@contextmanager
def serving(config_path: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """`pgsync-dossier serve` in its own process, as a service runs it: its base URL once
    /healthz answers. On the way out, its log must not hold the sync token."""
    port = free_port()
    server = subprocess.Popen(
        [EXECUTABLE, "--config", str(config_path), "serve", "--host", host, "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
        assert TOKEN not in log


def make_api_token(site: Site, name: str = "ops", read_only: bool = False) -> str:
    """A named API token on this site, made through the CLI as an operator does: the HTTP API
    and the web page take it, never the sync token."""
    flags = ["--read-only"] if read_only else []
    token: str = site.ok("api-token", "create", name, *flags, "--json").json()["token"]
    return token

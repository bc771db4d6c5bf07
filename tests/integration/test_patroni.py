"""A smoke test with the Leader under Patroni: a switchover, and the replicas follow.

Runs where etcd and Patroni are installed (CI installs them: Debian's `etcd-server`, Patroni
from the package index; elsewhere set PGSYNC_DOSSIER_PATRONI to a `patroni` executable the
server user can run) and on PostgreSQL 17+ (failover slots). A two-member cluster on one etcd,
the dossier database on its primary, two lists attached on a Subscriber through both members'
addresses; `patronictl switchover`, writes on the new primary; then `sync --all` exits 0,
`verify` is equal, no row is lost or duplicated, and no list was copied or repaired again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from pgsync_dossier import migrations
from pgsync_dossier.clusters import LocalCluster, ensure_server_user, free_port
from tests.harness import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    make_list,
    wait_until,
    write_config,
)


def _find_patroni() -> str | None:
    beside = Path(sys.executable).with_name("patroni")  # installed in the tests' virtualenv (CI)
    return os.environ.get("PGSYNC_DOSSIER_PATRONI") or (str(beside) if beside.exists() else None)


PATRONI = _find_patroni()
ETCD = shutil.which("etcd")
MEMBERS = ("hq-a", "hq-b")
SUPERUSER_PASSWORD = "patroni-superuser"


def _as_server_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    user = ensure_server_user()
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _runs_as(owner: dict[str, Any], executable: str) -> bool:
    try:
        subprocess.run([executable, "--version"], check=True, capture_output=True, timeout=60, **owner)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@dataclass
class PatroniCluster:
    root: Path
    bindir: Path
    ports: dict[str, int]  # PostgreSQL port per member
    api: dict[str, int]  # REST API port per member

    def config(self, member: str) -> Path:
        return self.root / f"{member}.yml"

    def primary(self) -> str | None:
        for member, port in self.api.items():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/primary", timeout=2) as answer:
                    if answer.status == 200:
                        return member
            except (urllib.error.URLError, OSError):
                continue
        return None

    def node(self, member: str) -> Node:
        return Node(member, _Reached(self.ports[member]), "HQ dossiers")  # type: ignore[arg-type]

    def patronictl(self, *args: str) -> None:
        command = [
            str(Path(PATRONI or "").with_name("patronictl")),
            "-c",
            str(self.config(MEMBERS[0])),
            *args,
        ]
        subprocess.run(command, check=True, capture_output=True, text=True, **_as_server_user())


class _Reached:
    """What Node needs of a cluster: where it listens."""

    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port

    def tcp_url(self, dbname: str, user: str, password: str | None = None) -> str:
        return LocalCluster.tcp_url(self, dbname, user, password)  # type: ignore[arg-type]


def _member_config(cluster: PatroniCluster, member: str, etcd_port: int) -> dict[str, Any]:
    return {
        "scope": "hq",
        "namespace": "/pgsync-dossier-tests/",
        "name": member,
        "restapi": {
            "listen": f"127.0.0.1:{cluster.api[member]}",
            "connect_address": f"127.0.0.1:{cluster.api[member]}",
        },
        "etcd3": {"hosts": f"127.0.0.1:{etcd_port}"},
        "bootstrap": {
            "dcs": {
                "ttl": 20,
                "loop_wait": 2,
                "retry_timeout": 5,
                "postgresql": {
                    "use_slots": True,
                    "parameters": {
                        "wal_level": "logical",
                        "hot_standby_feedback": "on",
                        "sync_replication_slots": "on",
                        "max_wal_senders": 20,
                        "max_replication_slots": 20,
                        "max_worker_processes": 16,
                        "max_logical_replication_workers": 8,
                        "fsync": "off",
                    },
                },
            },
            "initdb": [
                {"encoding": "UTF8"},
                {"locale": "C"},
                {"auth-local": "trust"},
                {"auth-host": "scram-sha-256"},
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{cluster.ports[member]}",
            "connect_address": f"127.0.0.1:{cluster.ports[member]}",
            "data_dir": str(cluster.root / member),
            "bin_dir": str(cluster.bindir),
            "pgpass": str(cluster.root / f"{member}.pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                "replication": {"username": "replicator", "password": "patroni-replicator"},
            },
            "parameters": {"unix_socket_directories": str(cluster.root)},
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
            ],
        },
    }


@pytest.fixture
def patroni(pg_bindir: Path, pg_version: int) -> Iterator[PatroniCluster]:
    if not (PATRONI and ETCD):
        pytest.skip("Patroni and etcd are not installed here (CI installs them)")
    if pg_version < 17:
        pytest.skip("failover slots need PostgreSQL 17 or later")
    owner = _as_server_user()
    if owner and not _runs_as(owner, PATRONI):
        pytest.skip(
            "the server user cannot run this virtualenv's patroni (its Python lives under a "
            "private home): run the tests as an ordinary user, as CI does"
        )
    root = Path(tempfile.mkdtemp(prefix="pgsd-patroni-"))
    os.chmod(root, 0o755)
    if owner:
        os.chown(root, owner["user"], owner["group"])
    cluster = PatroniCluster(
        root, pg_bindir, {m: free_port() for m in MEMBERS}, {m: free_port() for m in MEMBERS}
    )
    etcd_port, peer_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with open(root / "etcd.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        ETCD,
                        "--name",
                        "e",
                        "--data-dir",
                        str(root / "etcd"),
                        "--listen-client-urls",
                        f"http://127.0.0.1:{etcd_port}",
                        "--advertise-client-urls",
                        f"http://127.0.0.1:{etcd_port}",
                        "--listen-peer-urls",
                        f"http://127.0.0.1:{peer_port}",
                        "--initial-advertise-peer-urls",
                        f"http://127.0.0.1:{peer_port}",
                        "--initial-cluster",
                        f"e=http://127.0.0.1:{peer_port}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    **owner,
                )
            )
        for n, member in enumerate(MEMBERS):
            path = cluster.config(member)
            path.write_text(yaml.safe_dump(_member_config(cluster, member, etcd_port)))
            if owner:
                os.chown(path, owner["user"], owner["group"])
            with open(root / f"{member}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [PATRONI, str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=root, **owner
                    )
                )
            if n == 0:
                wait_until(lambda: cluster.primary() == MEMBERS[0], "Patroni to bootstrap its primary", 90)
        yield cluster
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(root, ignore_errors=True)


def _replica_ready(cluster: PatroniCluster, member: str, group: str) -> bool:
    conninfo = (
        f"host=127.0.0.1 port={cluster.ports[member]} user=postgres "
        f"password={SUPERUSER_PASSWORD} dbname=postgres"
    )
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND synced AND NOT temporary",
                [group],
            ).fetchone()
        return bool(row and row[0])
    except psycopg.Error:
        return False


def test_replicas_follow_a_patroni_switchover(
    patroni: PatroniCluster, sites: dict[str, Site], tmp_path: Path
) -> None:
    sub = sites["subscriber_a"]
    first = patroni.ports[MEMBERS[0]]
    with psycopg.connect(
        f"host=127.0.0.1 port={first} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres",
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(ADMIN_USER), sql.Literal(ADMIN_PASSWORD)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("HQ dossiers")))
    hq = patroni.node(MEMBERS[0])
    migrations.migrate(hq.url)
    leader = Site(hq, write_config(tmp_path / "hq.yaml", hq, "leader"))
    leader.ok("setup")
    url = (
        f"postgresql://127.0.0.1:{patroni.ports[MEMBERS[0]]},127.0.0.1:{patroni.ports[MEMBERS[1]]}/"
        "HQ%20dossiers?target_session_attrs=read-write"
    )
    pairs = []
    for n in range(2):
        remote, local = make_list(hq, f"HQ {n}"), make_list(sub.node, f"replica {n}")
        add_dossiers(hq, remote, 10, faces_each=1, prefix=f"before-{n}-")
        sub.ok("attach", "--remote-list", str(remote), "--remote-url", url, "--local-list", str(local))
        pairs.append((remote, local))
    for remote, _local in pairs:
        add_dossiers(hq, remote, 5, faces_each=1, prefix="while-streaming-")
    sub.ok("sync", "--all")
    group = sub.node.execute("SELECT name FROM pgsync.sync_group")[0]["name"]
    wait_until(lambda: _replica_ready(patroni, MEMBERS[1], group), "the replica to synchronize the slot", 120)
    links_before = sub.node.execute("SELECT local_list_id, state, copy_expected, updated_at FROM pgsync.link")

    patroni.patronictl("switchover", "--primary", MEMBERS[0], "--candidate", MEMBERS[1], "--force")
    wait_until(lambda: patroni.primary() == MEMBERS[1], "the switchover", 120)
    new_hq = patroni.node(MEMBERS[1])
    for remote, _local in pairs:
        add_dossiers(new_hq, remote, 5, faces_each=1, prefix="after-switchover-")

    result = sub.run("sync", "--all")
    assert result.exit_code == 0, result.stderr
    found = assert_converged(new_hq, sub, pairs, outside={"dossier": 0, "dossier_face": 0})
    for compared in found.lists:  # 10 + 5 + 5: none lost, none twice
        assert compared.replica_rows == compared.leader_rows == {"dossier": 20, "dossier_face": 20}
    assert sub.node.execute("SELECT count(*) AS n FROM pgsync.sync_run WHERE reason = 'heal'")[0]["n"] == 0
    assert (
        sub.node.execute("SELECT local_list_id, state, copy_expected, updated_at FROM pgsync.link")
        == links_before
    )
    assert {row["leader_host"] for row in sub.ok("status", "--json").json()} == {
        f"127.0.0.1:{patroni.ports[MEMBERS[1]]}"
    }

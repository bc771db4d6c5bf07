"""The benchmark's own clusters: a Leader and a Subscriber, fsync on, set up as a DBA would.

Besides the Subscriber's dossier database ("dossiers", set up), the Subscriber cluster holds
plain migrated databases: "floor" (the fair floor's target: the same tables and indexes,
no pgsync triggers), "native" (a hand-made native subscription's target) and, where the
server has pglogical installed, "pglogical" (its subscription's target; the Leader's database
then has the extension and a provider node too).

With `started(bindir, second_subscriber=True)` (the soak), a second Subscriber joins: its own
cluster ("subscriber_b"), its own config and `setup`, and only the dossier database.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.rows import dict_row

from pgsync_dossier import migrations
from pgsync_dossier.clusters import LocalCluster, server_version
from pgsync_dossier.token import generate_token

ADMIN, PASSWORD = "bench", "bench-password"
EMBEDDING_BYTES = 2048
FACE_MODEL = "bench-model"
EXECUTABLE = str(Path(sys.executable).with_name("pgsync-dossier"))
#: Bench-only settings on top of the project's replication settings (fsync stays on).
SETTINGS = {
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    # Room for the peers' one-subscription-per-list runs (version 1's shape) next to pgsync's.
    # The fleet case: a relay's 32 downstream slots and the sites' 34 origins on one cluster
    # (on 15-17 origins count against max_replication_slots too).
    "max_replication_slots": "80",
    "max_wal_senders": "80",
    "max_logical_replication_workers": "40",
    "max_worker_processes": "48",
}

Conn = psycopg.Connection[dict[str, Any]]


@dataclass
class Timed:
    seconds: float
    exit_code: int
    stdout: str
    stderr: str
    #: the process's own peak resident set (VmHWM, see _Peak), in MB
    peak_rss_mb: float = 0.0


@dataclass
class Sites:
    root: Path
    bindir: Path
    leader: LocalCluster
    subscriber: LocalCluster
    configs: dict[str, Path] = field(default_factory=dict)
    lists: dict[str, int] = field(default_factory=dict)
    #: The second Subscriber (config "subscriber_b"), when `started` was asked for one.
    subscriber_b: LocalCluster | None = None
    #: Faces `fill` gives each dossier (`--size` runs: 2, as large sites enrol several).
    faces_per_dossier: int = 1
    #: Leader lists `filled_list` made, by (name, size): large lists are filled once per run.
    filled: dict[tuple[str, int], int] = field(default_factory=dict)
    #: The peak RSS of the last pgsync-dossier process `cli` ran (attach returns only seconds).
    last_peak_rss_mb: float = 0.0

    @property
    def subscribers(self) -> dict[str, LocalCluster]:
        """Each Subscriber by the name of its config (the name `cli` takes)."""
        found = {"subscriber": self.subscriber}
        if self.subscriber_b is not None:
            found["subscriber_b"] = self.subscriber_b
        return found

    @property
    def version(self) -> str:
        return server_version(self.bindir)

    def url(self, cluster: LocalCluster, dbname: str = "dossiers") -> str:
        return cluster.tcp_url(dbname, ADMIN, PASSWORD)

    @property
    def leader_url(self) -> str:
        """What a Subscriber is given: no password (the token-derived login is used)."""
        return self.leader.tcp_url("dossiers", "x").replace("x@", "")

    def connect(self, cluster: LocalCluster, dbname: str = "dossiers") -> Conn:
        return psycopg.connect(self.url(cluster, dbname), autocommit=True, row_factory=dict_row)

    def execute(
        self, cluster: LocalCluster, query: Any, params: Any = None, dbname: str = "dossiers"
    ) -> list[dict[str, Any]]:
        with self.connect(cluster, dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def publish_list(self, name: str, remote: int) -> None:
        """A hand-made publication of one Leader list (both tables, row-filtered): the native peer."""
        self.execute(
            self.leader,
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE dossier WHERE (dossier_list_id = {l}), "
                "dossier_face WHERE (dossier_list_id = {l})"
            ).format(sql.Identifier(name), l=sql.Literal(remote)),
        )

    def checkpoint(self) -> None:
        for cluster in (self.leader, *self.subscribers.values()):
            self.execute(cluster, "CHECKPOINT")

    def cli(self, role: str, *args: str, tty: bool = False, env: dict[str, str] | None = None) -> Timed:
        """One whole pgsync-dossier process, as a user or a timer runs it. With `tty`, its
        stderr is a terminal (the progress bar is drawn, as for a person at a prompt)."""
        command = [EXECUTABLE, "--config", str(self.configs[role]), *args]
        full_env = {**os.environ, **(env or {})}
        if not tty:
            seconds, code, out, err, rss = _run(command, full_env, subprocess.PIPE)
            self.last_peak_rss_mb = rss
            return Timed(seconds, code, out.decode(), err.decode(), rss)
        primary, secondary = pty.openpty()
        drained: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(primary, drained), daemon=True)
        reader.start()
        seconds, code, out, _, rss = _run(command, full_env, secondary)
        self.last_peak_rss_mb = rss
        os.close(secondary)
        reader.join(5)
        os.close(primary)
        return Timed(seconds, code, out.decode(), b"".join(drained).decode(errors="replace"), rss)

    def attach(
        self, remote: int, local: int, *extra: str, tty: bool = True, env: dict[str, str] | None = None
    ) -> float:
        """`attach` as a user runs it, by default at a prompt (its own process, the progress
        bar drawn); with tty=False as a script runs it. Its seconds; a failure ends the run."""
        timed = self.cli(
            "subscriber",
            "attach",
            "--remote-list",
            str(remote),
            "--remote-url",
            self.leader_url,
            "--local-list",
            str(local),
            *extra,
            tty=tty,
            env=env,
        )
        if timed.exit_code != 0:
            raise RuntimeError(f"attach failed: {timed.stderr.strip()[-500:]}")
        return timed.seconds

    def live_replica(self, name: str, dossiers: int) -> tuple[int, int, tuple[int, int, str]]:
        """A Leader list of `dossiers` dossiers (the run's shared one of that size), attached
        here and aged as a replica that has been live a while: (Leader list, replica, the Leader
        list's content)."""
        remote = self.filled_list("list", dossiers)
        local = self.make_list(self.subscriber, f"{name} replica")
        self.attach(remote, local)
        self.age_replicas()
        return remote, local, self.content(self.leader, remote)

    def age_replicas(self) -> None:
        """As autovacuum leaves replicas that have been live a while: their visibility map set,
        their statistics there (right after a copy neither is true yet)."""
        self.execute(self.subscriber, "VACUUM (ANALYZE) dossier, dossier_face")

    def attach_again(self, remote: int, local: int) -> float:
        """The seconds of a fresh attach of a replica: detach --purge and a VACUUM (the purged
        rows' space free again: replicas forbid TRUNCATE) untimed before it, aged after it."""
        self.ok("subscriber", "detach", str(local), "--purge")
        self.execute(self.subscriber, "VACUUM dossier, dossier_face")
        self.checkpoint()
        seconds = self.attach(remote, local)
        self.age_replicas()
        return seconds

    def ok(self, role: str, *args: str) -> Timed:
        result = self.cli(role, *args)
        if result.exit_code != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.exit_code}): {result.stderr.strip()}")
        return result

    # -- data --------------------------------------------------------------------------------
    def make_list(self, cluster: LocalCluster, name: str, dbname: str = "dossiers") -> int:
        rows = self.execute(
            cluster, "INSERT INTO dossier_list (name) VALUES (%s) RETURNING id", [name], dbname
        )
        return int(rows[0]["id"])

    def filled_list(self, name: str, size: int) -> int:
        """A Leader list of `size` dossiers, made and filled once per run (a million rows take
        minutes to write): cases that only read it, or restore what they change, share it."""
        if (name, size) not in self.filled:
            self.filled[(name, size)] = self.make_list(self.leader, f"{name} {size}")
            self.fill(self.filled[(name, size)], size)
        return self.filled[(name, size)]

    def fill(self, list_id: int, count: int) -> None:
        """`count` dossiers in a Leader list, each with `faces_per_dossier` faces: 2048 random
        (incompressible) bytes per embedding, as a real face model's floats are."""
        with self.connect(self.leader) as conn, conn.cursor() as cur:
            with conn.transaction():
                ids = [uuid.uuid4() for _ in range(count)]
                with cur.copy("COPY dossier (id, dossier_list_id, name, comment) FROM STDIN") as copy:
                    for n, dossier_id in enumerate(ids):
                        copy.write_row((dossier_id, list_id, f"Person {n}", f"comment {n % 97}"))
                with cur.copy(
                    "COPY dossier_face (id, dossier_id, dossier_list_id, embedding, model) FROM STDIN"
                ) as copy:
                    for dossier_id in ids:
                        for _face in range(self.faces_per_dossier):
                            copy.write_row(
                                (uuid.uuid4(), dossier_id, list_id, os.urandom(EMBEDDING_BYTES), FACE_MODEL)
                            )
            conn.execute("VACUUM ANALYZE dossier, dossier_face")

    def content(self, cluster: LocalCluster, list_id: int, dbname: str = "dossiers") -> tuple[int, int, str]:
        """Rows and a digest of a list's content (not of its list id): equal on both sides."""
        row = self.execute(
            cluster,
            "SELECT (SELECT count(*) FROM dossier WHERE dossier_list_id = %(l)s) AS dossiers, "
            "(SELECT count(*) FROM dossier_face WHERE dossier_list_id = %(l)s) AS faces, "
            "md5(coalesce((SELECT string_agg(id::text || name || comment, ',' ORDER BY id) FROM dossier "
            "WHERE dossier_list_id = %(l)s), '') || coalesce((SELECT string_agg(id::text || md5(embedding), "
            "',' ORDER BY id) FROM dossier_face WHERE dossier_list_id = %(l)s), '')) AS digest",
            {"l": list_id},
            dbname,
        )[0]
        return int(row["dossiers"]), int(row["faces"]), str(row["digest"])


class _Peak:
    """A process's own peak RSS: VmHWM of /proc/PID/status, read every PEAK_EVERY_S while it
    runs (the high-water mark of its own address space, which exec starts afresh). Not
    wait4's ru_maxrss: Linux carries the forking parent's high-water mark into the child's
    across exec, so every command would weigh at least as much as this harness."""

    def __init__(self, pid: int) -> None:
        self.mb = 0.0
        self._path = Path(f"/proc/{pid}/status")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                for line in self._path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mb = max(self.mb, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                return  # the process is gone (or a zombie: its memory is released)
            self._done.wait(PEAK_EVERY_S)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


PEAK_EVERY_S = 0.02


def _run(command: list[str], env: dict[str, str], stderr: Any) -> tuple[float, int, bytes, bytes, float]:
    """Run a process to its end: (seconds, exit code, stdout, stderr, peak RSS in MB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
    outputs: dict[str, bytes] = {}

    def read(name: str, stream: Any) -> None:
        outputs[name] = stream.read()

    streams = {"out": process.stdout, "err": process.stderr if stderr is subprocess.PIPE else None}
    readers = [
        threading.Thread(target=read, args=(name, stream)) for name, stream in streams.items() if stream
    ]
    for thread in readers:
        thread.start()
    peak = _Peak(process.pid)
    _, status = os.waitpid(process.pid, 0)
    peak.stop()
    seconds = time.perf_counter() - start
    for thread in readers:
        thread.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    for stream in streams.values():
        if stream:
            stream.close()
    return (
        seconds,
        process.returncode,
        outputs.get("out", b""),
        outputs.get("err", b""),
        peak.mb,
    )


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def has_pglogical(bindir: Path) -> bool:
    """pglogical is a peer where its package is installed for this server (Debian's layout)."""
    return (bindir.parent / "lib" / "pglogical.so").exists()


def make_cluster(
    root: Path, name: str, bindir: Path, dossier_database: str | None = "dossiers"
) -> LocalCluster:
    """A started cluster with the bench's settings and login; pgsync-dossier's logins may reach
    `dossier_database` only (None: any database, e.g. the fleet's relays)."""
    settings = dict(SETTINGS)
    if has_pglogical(bindir):
        settings["shared_preload_libraries"] = "pglogical"
    if int(server_version(bindir).split(".")[0]) >= 18:
        settings["max_active_replication_origins"] = "80"  # 18 caps subscriptions apart (default 10)
    cluster = LocalCluster(root / name, bindir=bindir, settings=settings, dossier_database=dossier_database)
    cluster.init().start()
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(ADMIN), sql.Literal(PASSWORD)
            )
        )
    return cluster


@contextmanager
def started(bindir: Path, second_subscriber: bool = False) -> Iterator[Sites]:
    """A Leader and a Subscriber (with `second_subscriber`, a second one on its own cluster),
    set up; all removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="pgsd-bench-"))
    os.chmod(root, 0o755)  # noqa: S103 - as root, the server user must reach its clusters
    clusters: list[LocalCluster] = []
    try:
        leader = make_cluster(root, "leader", bindir)
        clusters.append(leader)
        subscriber = make_cluster(root, "subscriber", bindir)
        clusters.append(subscriber)
        sites = Sites(root, bindir, leader, subscriber)
        if second_subscriber:
            sites.subscriber_b = make_cluster(root, "subscriber_b", bindir)
            clusters.append(sites.subscriber_b)
        token = generate_token()
        peers = ["floor", "native", *(["pglogical"] if has_pglogical(bindir) else [])]
        databases = [(leader, ["dossiers"]), (subscriber, ["dossiers", *peers])]
        if sites.subscriber_b is not None:
            databases.append((sites.subscriber_b, ["dossiers"]))
        for cluster, dbs in databases:
            with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
                for db in dbs:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            for db in dbs:
                migrations.migrate(sites.url(cluster, db))
        if has_pglogical(bindir):
            for cluster, db in ((leader, "dossiers"), (subscriber, "pglogical")):
                sites.execute(cluster, "CREATE EXTENSION pglogical", dbname=db)
                sites.execute(
                    cluster,
                    "SELECT pglogical.create_node(node_name := %s, dsn := %s)",
                    [f"bench_{db}", sites.url(cluster, db)],
                    dbname=db,
                )
        nodes = [("leader", "leader", leader)]
        nodes += [("subscriber", name, cluster) for name, cluster in sites.subscribers.items()]
        for role, name, cluster in nodes:
            path = root / f"{name}.yaml"
            path.write_text(
                yaml.safe_dump(
                    {
                        "role": role,
                        "node_name": f"bench-{name.replace('_', '-')}",
                        "database_url": sites.url(cluster),
                        "sync_token": token,
                        "face_model": FACE_MODEL,
                    }
                )
            )
            path.chmod(0o600)
            sites.configs[name] = path
            sites.ok(name, "setup")
        yield sites
    finally:
        for cluster in clusters:
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)

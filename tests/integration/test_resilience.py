"""Idempotence, resuming after a crash, the Leader going down, concurrency, secrets."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgsync_dossier import catalog, links, subscriber
from pgsync_dossier import config as config_module
from pgsync_dossier.leader_client import LeaderClient, Login
from pgsync_dossier.token import Secret, enrollment_password
from tests.harness import (
    TOKEN,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    list_rows,
    make_list,
    oracle_verdict,
    own_login_passwords,
    wait_for_backend,
    wait_for_same,
    wait_until,
    write_config,
)


def _logged_so_far(node: Node) -> str:
    """The node's server log once everything logged before this call is in it: a statement
    with a marker of its own is run (log_statement = 'all' logs it) and awaited in the log.
    The server writes a session's log lines before it answers, so what the commands before
    this one logged precedes the marker."""
    marker = f"pgsd log marker {os.urandom(8).hex()}"
    node.execute(sql.SQL("SELECT {}::text").format(sql.Literal(marker)))  # in the statement's own text
    return str(
        wait_until(
            lambda: (text := node.cluster.logfile.read_text(errors="replace")) and marker in text and text,
            f"the marker in {node.name}'s server log",
        )
    )


def _healthy_single_link(leader: Site, sub: Site, remote: int, local: int) -> None:
    assert len(sub.node.execute("SELECT * FROM pgsync.link")) == 1
    assert len(sub.node.execute("SELECT * FROM pg_subscription")) == 1
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1
    assert sub.node.execute("SELECT state FROM pgsync.link")[0]["state"] == "ready"
    add_dossiers(leader.node, remote, 1, prefix="probe")
    wait_for_same(leader.node, remote, sub.node, local)


def test_attach_twice_is_one_link(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local)
    again = attach(sub, leader, remote, local)
    assert again["dossiers"] == 3
    assert (again["created"], again["synced"], again["first_sync_pending"]) == (False, False, False)
    said = sub.ok(*attach_args(leader.leader_url, remote, local)).stdout
    assert "it already did (ready, 3 dossiers and 6 faces here); nothing was copied" in said, said
    _healthy_single_link(leader, sub, remote, local)


def test_leader_down_detach_then_orphan_slot_cleanup(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 2)
    attach(sub, leader, remote, local)
    leader.node.cluster.stop()
    try:
        result = sub.ok("detach", str(local), "--json").json()
        assert result["leader_reachable"] is False and result["slot_dropped"] is False
        assert result["caught_up"] is False
        rows = sub.ok("status", "--json").json()
        assert [r["state"] for r in rows] == ["orphan-slot"]
        # The list is an ordinary writable list again, with its dossiers kept.
        sub.node.execute("INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'local')", [local])
        assert len(list_rows(sub.node, local)[0]) == 3
    finally:
        leader.node.cluster.start()
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1
    # status only reads: the orphan stays until a command that may write reaches the Leader.
    assert [r["state"] for r in sub.ok("status", "--json").json()] == ["orphan-slot"]
    sub.ok("tick")
    assert sub.ok("status", "--json").json() == []
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")
    assert not leader.node.execute("SELECT * FROM pg_publication")
    assert not leader.node.execute("SELECT * FROM pgsync.group_registration")


def test_local_deletes_only_while_the_leader_is_unavailable(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local)
    victim = sub.node.execute("SELECT id FROM dossier LIMIT 1")[0]["id"]
    leader.node.cluster.stop()
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sub.node.execute("DELETE FROM dossier WHERE id = %s", [victim])
        rows = sub.ok("status", "--json").json()  # status sees it, but only reads
        assert rows[0]["leader_available"] is True and "cannot reach" in rows[0]["last_error"]
        sub.ok("tick")  # the probe records the Leader as unavailable
        assert sub.ok("status", "--json").json()[0]["leader_available"] is False
        sub.node.execute("DELETE FROM dossier WHERE id = %s", [victim])
        assert (
            sub.node.execute("SELECT count(*) AS n FROM dossier_face WHERE dossier_id = %s", [victim])[0]["n"]
            == 0
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sub.node.execute("INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'x')", [local])
    finally:
        leader.node.cluster.start()
    sub.ok("tick")
    rows = sub.ok("status", "--json").json()
    assert rows[0]["leader_available"] is True
    another = sub.node.execute("SELECT id FROM dossier LIMIT 1")[0]["id"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sub.node.execute("DELETE FROM dossier WHERE id = %s", [another])
    # An operator can declare it, and clear it.
    assert sub.cli("leader-unavailable", str(local)).exit_code == 2
    sub.ok("leader-unavailable", str(local), "--confirm")
    sub.node.execute("DELETE FROM dossier WHERE id = %s", [another])
    sub.ok("leader-unavailable", str(local), "--clear")
    # The link still works after local deletes: later Leader edits keep arriving.
    add_dossiers(leader.node, remote, 1, prefix="after")
    wait_until(
        lambda: sub.node.execute("SELECT count(*) AS n FROM dossier WHERE name = 'after0'")[0]["n"] == 1,
        "a Leader insert after local deletes",
    )

    def only_the_local_deletes_differ() -> bool:
        """The oracle finds the replica equal to its Leader list but for the two dossiers deleted
        here (each with its two faces): nothing else missing, nothing extra, nothing changed."""
        found = oracle_verdict(leader, sub, [(remote, local)])
        (compared,) = found.lists
        dossiers, faces = compared.tables["dossier"], compared.tables["dossier_face"]
        return (
            set(dossiers.missing) == {str(victim), str(another)}
            and len(faces.missing) == 4
            and not (dossiers.extra or dossiers.changed or faces.extra or faces.changed)
            and not (found.apart_on_leader or found.apart_on_replica)
        )

    wait_until(
        only_the_local_deletes_differ, "the replica to differ from its Leader list by the local deletes only"
    )


def test_a_concurrent_local_insert_cannot_slip_into_the_list(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    cfg = config_module.load(sub.config_path)
    outcome: dict[str, object] = {}
    with psycopg.connect(sub.node.url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        with conn.transaction():
            conn.execute("SELECT 1 FROM dossier_list WHERE id = %s FOR UPDATE", [local])

            def insert() -> None:
                try:
                    sub.node.execute(
                        "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'sneaky')", [local]
                    )
                    outcome["result"] = "inserted"
                except psycopg.Error as exc:
                    outcome["result"] = type(exc).__name__

            worker = threading.Thread(target=insert)
            worker.start()
            # The guard waits for the list row: the insert is seen waiting for that lock.
            wait_for_backend(
                sub.node,
                "the local insert to wait for the list row's lock",
                query_like="INSERT INTO dossier %sneaky%",
                wait_event_type="Lock",
            )
            assert worker.is_alive()
            with LeaderClient(leader.leader_url, Login.enrollment(cfg.sync_token)) as client:
                facts = client.facts()
            group = catalog.find_or_make_group(
                conn,
                tag=catalog.node(conn).node_tag,  # type: ignore[union-attr]
                leader_id=facts.leader_id,
                leader_url=leader.leader_url,
                leader_node_name=facts.node_name,
                schedule=None,
                leader_schedule=None,
            )
            catalog.insert_link(conn, local, remote, facts.leader_id, group.id, facts.leader_id)
        worker.join(10)
    assert outcome["result"] == "InsufficientPrivilege"
    assert not sub.node.execute("SELECT * FROM dossier")


def test_secrets_never_leak(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    password = enrollment_password(Secret(TOKEN)).reveal()
    for site in (leader, sub):
        with psycopg.connect(site.node.cluster.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            conn.execute("SELECT pg_reload_conf()")
    try:
        leader.ok("setup")
        sub.ok("setup")
        remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
        add_dossiers(leader.node, remote, 1)
        outputs = [
            sub.cli(
                "--debug",
                "attach",
                "--remote-list",
                str(remote),
                "--remote-url",
                leader.leader_url,
                "--local-list",
                str(local),
                "--json",
            ),
            sub.cli("--debug", "status", "--json"),
            sub.cli("status"),
            leader.cli("--debug", "status", "--json"),
            sub.cli("config", "check"),
            sub.cli("config", "check", "--json"),
        ]
        bad = Site(sub.node, write_config(tmp_path / "bad.yaml", sub.node, "subscriber", sync_token="X" * 40))
        outputs.append(
            bad.cli(
                "--debug",
                "attach",
                "--remote-list",
                str(remote),
                "--remote-url",
                leader.leader_url,
                "--local-list",
                str(local),
            )
        )
        secrets = [TOKEN, password, *own_login_passwords(sub)]
        for result in outputs:
            for secret in secrets:
                assert secret not in result.stdout and secret not in result.stderr
        logs = {site.node.name: _logged_so_far(site.node) for site in (leader, sub)}
        assert "api_node_facts" in logs["leader"] and "pgsync.link" in logs["subscriber_a"]  # logging is on
        for log in logs.values():
            assert not [secret for secret in secrets if secret in log]
    finally:
        for site in (leader, sub):
            with psycopg.connect(site.node.cluster.conninfo(), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM RESET log_statement")
                conn.execute("SELECT pg_reload_conf()")


def test_a_new_token_refuses_new_attaches_and_leaves_streams_alone(
    sites: dict[str, Site], tmp_path: Path
) -> None:
    """The token only enrolls: rotating it on the Leader refuses a Subscriber with the old one
    at its next attach, while the streams of its own login go on; once the Subscriber has the
    new token too, it attaches again."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, second, local = (
        make_list(leader.node, "L"),
        make_list(leader.node, "L2"),
        make_list(sub.node, "T"),
    )
    attach(sub, leader, remote, local)
    new_token = "N" * 48
    rotated_leader = Site(
        leader.node, write_config(tmp_path / "l.yaml", leader.node, "leader", sync_token=new_token)
    )
    assert rotated_leader.ok("setup", "--json").json()["token_rotated"] is True
    other = make_list(sub.node, "T2")
    result = sub.cli(
        "attach", "--remote-list", str(second), "--remote-url", leader.leader_url, "--local-list", str(other)
    )
    assert result.exit_code == 3 and "sync token differs" in result.stderr
    add_dossiers(leader.node, remote, 1)
    wait_for_same(leader.node, remote, sub.node, local, timeout_s=30)
    rotated_sub = Site(
        sub.node, write_config(tmp_path / "s.yaml", sub.node, "subscriber", sync_token=new_token)
    )
    assert rotated_sub.ok("setup", "--json").json()["token_rotated"] is True
    attach(rotated_sub, leader, second, other)
    add_dossiers(leader.node, remote, 1)
    wait_for_same(leader.node, remote, sub.node, local, timeout_s=30)


def test_concurrent_attaches_make_one_link(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote = make_list(leader.node, "L")
    add_dossiers(leader.node, remote, 20)
    t1, t2 = make_list(sub.node, "T1"), make_list(sub.node, "T2")
    cfg = config_module.load(sub.config_path)
    requests = [links.AttachRequest(remote, leader.leader_url, t) for t in (t1, t1, t2, t1)]
    results: list[object] = [None] * len(requests)

    def run(index: int) -> None:
        try:
            results[index] = links.attach(cfg, requests[index]).local_list
        except Exception as exc:  # collected and checked below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    from pgsync_dossier.errors import PreconditionFailed

    assert all(isinstance(r, int | PreconditionFailed) for r in results), results
    assert len(sub.node.execute("SELECT * FROM pgsync.link")) == 1
    assert len(sub.node.execute("SELECT * FROM pg_subscription")) == 1
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1
    (link,) = sub.node.execute("SELECT local_list_id FROM pgsync.link")
    assert link["local_list_id"] in [r for r in results if isinstance(r, int)]
    # The one link holds the Leader list; the list that lost the race holds nothing.
    assert_converged(
        leader, sub, [(remote, link["local_list_id"])], outside={"dossier": 0, "dossier_face": 0}
    )


def test_a_failing_create_subscription_keeps_the_password_out_of_the_log(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    password = "A-Password-That-Must-Not-Be-Logged-" + "x" * 20
    from pgsync_dossier import pg
    from pgsync_dossier.clusters import free_port
    from pgsync_dossier.errors import OperationFailed

    with pg.connect(sub.node.url, what="test") as conn:
        conn.execute("SET log_min_error_statement = error")  # the default: failing statements are logged
        with pytest.raises(OperationFailed, match="creating the subscription .* failed"):
            subscriber.create_subscription(
                conn,
                "pgsync_doomed",
                f"postgresql://127.0.0.1:{free_port()}/x",
                Login("own", "pgsync_s_doomed", Secret(password)),
                True,
                leader_version=conn.info.server_version,
            )
    # The failure itself is logged (with the statement that failed, when it is logged at all).
    log = wait_until(
        lambda: (
            (text := sub.node.cluster.logfile.read_text(errors="replace"))
            and "could not connect to the publisher" in text
            and text
        ),
        "the failure in the Subscriber's server log",
    )
    assert password not in log and TOKEN not in log

"""Every refusal: its exit code, a clear line, and nothing left behind on either side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import TOKEN, Site, add_dossiers, make_list, write_config


def assert_nothing_left(leader: Site, sub: Site) -> None:
    assert not leader.node.execute("SELECT pubname FROM pg_publication")
    assert not leader.node.execute("SELECT slot_name FROM pg_replication_slots")
    assert not leader.node.execute("SELECT * FROM pgsync.group_registration")
    assert not leader.node.execute("SELECT * FROM pgsync.heartbeat")
    assert not sub.node.execute("SELECT subname FROM pg_subscription")
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    assert not sub.node.execute("SELECT * FROM pgsync.sync_group")
    assert not sub.node.execute("SELECT * FROM pgsync.heartbeat")


def _attach(sub: Site, url: str, remote: int, local: int) -> tuple[int, str]:
    result = sub.cli("attach", "--remote-list", str(remote), "--remote-url", url, "--local-list", str(local))
    assert "Traceback" not in result.stderr
    assert result.exit_code == 0 or result.stderr.count("\n") == 1, result.stderr
    return result.exit_code, result.stderr


def test_wrong_token(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    other = Site(sub.node, write_config(tmp_path / "other.yaml", sub.node, "subscriber", sync_token="W" * 40))
    code, err = _attach(other, leader.leader_url, remote, local)
    assert code == 3 and "sync tokens" in err and "differ" in err
    assert TOKEN not in err and "W" * 40 not in err
    assert_nothing_left(leader, sub)


def test_different_face_model(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    other = Site(
        sub.node, write_config(tmp_path / "other.yaml", sub.node, "subscriber", face_model="facenet-512")
    )
    code, err = _attach(other, leader.leader_url, remote, local)
    assert code == 3 and "face models differ" in err and "facenet-512" in err
    assert_nothing_left(leader, sub)


def test_missing_lists(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    code, err = _attach(sub, leader.leader_url, remote, 999)
    assert code == 3 and "local list 999 does not exist" in err
    code, err = _attach(sub, leader.leader_url, 777, local)
    assert code == 3 and "list 777 does not exist on the Leader" in err
    assert_nothing_left(leader, sub)


def test_unreachable_leader_and_invalid_url(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    from pgsync_dossier.clusters import free_port

    code, err = _attach(sub, f"postgresql://127.0.0.1:{free_port()}/dossiers", remote, local)
    assert code == 4 and "cannot reach the Leader" in err
    code, err = _attach(sub, "not a url", remote, local)
    assert code == 2 and "invalid Leader URL" in err
    code, err = _attach(sub, "postgresql://u:secret-pw@127.0.0.1:1/x?sslmode=bogus", remote, local)
    assert code == 2 and "secret-pw" not in err
    assert_nothing_left(leader, sub)


def test_already_replica_and_leader_list_already_replicated(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    first, second = make_list(leader.node, "L1"), make_list(leader.node, "L2")
    t1, t2 = make_list(sub.node, "T1"), make_list(sub.node, "T2")
    assert _attach(sub, leader.leader_url, first, t1)[0] == 0
    code, err = _attach(sub, leader.leader_url, second, t1)
    assert code == 3 and f"list {t1} is already a replica" in err
    code, err = _attach(sub, leader.leader_url, first, t2)
    assert code == 3 and "already replicated into local list" in err
    assert len(sub.node.execute("SELECT * FROM pgsync.link")) == 1
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1


def test_attach_on_a_leader_or_unset_node(sites: dict[str, Site], tmp_path: Path) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    code, err = _attach(leader, leader.leader_url, 1, 1)
    assert code == 3 and "attach runs on a subscriber" in err
    sub.node.execute("DELETE FROM pgsync.node")
    code, err = _attach(sub, leader.leader_url, 1, 1)
    assert code == 3 and "run pgsync-dossier setup" in err


def test_setup_preflight_refuses_unmigrated_schema(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    from pgsync_dossier import migrations

    migrations.migrate(sub.node.url, "0001")
    result = sub.cli("setup")
    assert result.exit_code == 3 and "pgsync-dossier migrate" in result.stderr
    assert "nothing was changed" in result.stderr


def test_commands_refuse_a_schema_older_than_the_code(sites: dict[str, Site]) -> None:
    """After the package was upgraded and before `migrate`: one line that says to migrate."""
    from pgsync_dossier import SCHEMA_REVISION, migrations

    sub = sites["subscriber_a"]
    previous = f"{int(SCHEMA_REVISION) - 1:04d}"
    migrations.migrate(sub.node.url, previous)
    for command in (("status",), ("tick",), ("sync", "--all")):
        result = sub.cli(*command)
        assert result.exit_code == 3, (command, result.stderr)
        assert result.stderr.strip() == (
            f"error: this database's schema is at revision {previous}, and this pgsync-dossier "
            f"needs {SCHEMA_REVISION}: run pgsync-dossier migrate, then setup"
        )
    sub.ok("migrate")
    sub.ok("status")


def test_setup_refuses_a_role_change(sites: dict[str, Site], tmp_path: Path) -> None:
    sub = sites["subscriber_a"]
    as_leader = Site(sub.node, write_config(tmp_path / "x.yaml", sub.node, "leader"))
    result = as_leader.cli("setup")
    assert result.exit_code == 3 and "set up as a subscriber" in result.stderr


@pytest.mark.parametrize("count", [1])
def test_detach_of_a_list_that_is_not_a_replica(sites: dict[str, Site], count: int) -> None:
    sub = sites["subscriber_a"]
    local = make_list(sub.node, "T")
    add_dossiers(sub.node, local, count)
    result = sub.cli("detach", str(local))
    assert result.exit_code == 3 and "not a replica" in result.stderr

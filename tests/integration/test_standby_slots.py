"""What a Leader failover can leave behind: synchronized_standby_slots naming a slot that no
standby streams through (a promoted standby inherits the setting with its base backup).

Every failover slot's walsender then waits for that slot (PostgreSQL 17+), so every stream
stops. The Leader's `setup`, `status` and `/metrics` name the slot, with or without standbys,
and a sync that times out says what its stream waits for instead of heartbeat numbers only.
Once the setting is fixed the sync succeeds, judged by the SQL oracle.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.harness import (
    Site,
    add_dossiers,
    assert_converged,
    attach,
    make_api_token,
    make_list,
    serving,
    wait_until,
)

SINCE = 17
GONE = "gone_standby"
IDLE = "idle_standby"


def _conninfo(leader: Site) -> str:
    return leader.node.cluster.conninfo()


def _set_standby_slots(leader: Site, value: str | None) -> None:
    """ALTER SYSTEM on the Leader's cluster, reloaded, and seen by new sessions."""
    with psycopg.connect(_conninfo(leader), autocommit=True) as conn:
        if value is None:
            conn.execute("ALTER SYSTEM RESET synchronized_standby_slots")
        else:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET synchronized_standby_slots = {}").format(sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")

    def seen() -> bool:
        with psycopg.connect(_conninfo(leader), autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('synchronized_standby_slots')").fetchone()
        return row is not None and row[0] == (value or "")

    wait_until(seen, f"synchronized_standby_slots = {value!r} after the reload")


@pytest.fixture
def standby_slots_reset(sites: dict[str, Site], pg_version: int) -> Iterator[Site]:
    """The Leader, its setting put back afterwards: its cluster serves the whole session."""
    if pg_version < SINCE:
        pytest.skip(f"synchronized_standby_slots and failover slots came with PostgreSQL {SINCE}")
    leader = sites["leader"]
    try:
        yield leader
    finally:
        _set_standby_slots(leader, None)
        with psycopg.connect(_conninfo(leader), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                [IDLE],
            )


def _leader_metrics(leader: Site, token: str) -> str:
    with serving(leader.config_path) as url:
        request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Token {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            text: str = response.read().decode()
    return text


def _setup_warnings(leader: Site) -> list[str]:
    warnings: list[str] = leader.ok("setup", "--json").json()["warnings"]
    return warnings


def _status_warnings(leader: Site) -> list[str]:
    result = leader.cli("status")
    assert result.exit_code == 0, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_a_missing_standby_slot_is_named_and_sync_says_its_stream_waits_for_it(
    standby_slots_reset: Site, sites: dict[str, Site]
) -> None:
    leader, sub = standby_slots_reset, sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 5, faces_each=1, prefix="before-")
    attach(sub, leader, remote, local)
    before = _setup_warnings(leader)

    _set_standby_slots(leader, GONE)
    add_dossiers(leader.node, remote, 5, faces_each=1, prefix="while-blocked-")
    result = sub.cli("sync", "--all", "--timeout", "8")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if "did not catch up" in line]
    assert lines, result.stderr
    for line in lines:
        assert "(heartbeat seen" in line
        assert f"standby slot '{GONE}' named in its synchronized_standby_slots, which does not exist" in line
        assert "walsender waits for" in line and "ALTER SYSTEM RESET synchronized_standby_slots" in line

    # The Leader says it too, though it has no standby at all.
    (warning,) = [w for w in _setup_warnings(leader) if w not in before]
    assert f"names the slot '{GONE}', which does not exist:" in warning
    assert "every Subscriber stream with a failover slot waits for it" in warning
    assert any(f"'{GONE}'" in w and "with a failover slot waits" in w for w in _status_warnings(leader))
    token = make_api_token(leader, read_only=True)
    exposition = _leader_metrics(leader, token)
    assert f'pgsync_dossier_leader_standby_slot_blocking{{slot="{GONE}",reason="missing"}} 1' in exposition

    _set_standby_slots(leader, None)
    result = sub.cli("sync", "--all", "--timeout", "60")
    assert result.exit_code == 0, result.stderr
    found = assert_converged(leader.node, sub, [(remote, local)], outside={"dossier": 0, "dossier_face": 0})
    (compared,) = found.lists
    assert compared.replica_rows == {"dossier": 10, "dossier_face": 10}
    assert _setup_warnings(leader) == before
    assert "pgsync_dossier_leader_standby_slot_blocking{" not in _leader_metrics(leader, token)


def test_an_unused_or_logical_standby_slot_is_named(
    standby_slots_reset: Site, sites: dict[str, Site]
) -> None:
    leader, sub = standby_slots_reset, sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    attach(sub, leader, remote, local)
    (group,) = sub.node.execute("SELECT name FROM pgsync.sync_group")
    with psycopg.connect(_conninfo(leader), autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", [IDLE])
    # A Subscriber's own logical slot named there (a typo, or a copy-paste) is no standby's either.
    _set_standby_slots(leader, f'{IDLE}, "{group["name"]}"')

    warnings = [w for w in _status_warnings(leader) if "synchronized_standby_slots names" in w]
    assert len(warnings) == 2, warnings
    idle, logical = warnings  # in the setting's order
    assert f"names the slot '{IDLE}', which no standby streams from now" in idle
    assert f"primary_slot_name = '{IDLE}'" in idle
    assert (
        f"ALTER SYSTEM SET synchronized_standby_slots = '{group['name']}'" in idle
    )  # the fix keeps the other
    assert f"names the slot '{group['name']}', which is a logical slot, not a standby's" in logical
    exposition = _leader_metrics(leader, make_api_token(leader, read_only=True))
    assert f'pgsync_dossier_leader_standby_slot_blocking{{slot="{IDLE}",reason="inactive"}} 1' in exposition
    assert (
        f'pgsync_dossier_leader_standby_slot_blocking{{slot="{group["name"]}",reason="not_physical"}} 1'
        in exposition
    )


def test_a_sync_that_times_out_names_the_lock_its_apply_worker_waits_for(sites: dict[str, Site]) -> None:
    """The Subscriber's side of the diagnosis: the apply worker waits for a row lock."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    attach(sub, leader, remote, local)
    blocker = sub.node.connect()
    try:
        blocker.execute("BEGIN")
        blocker.execute("SELECT * FROM pgsync.heartbeat FOR UPDATE")
        (pid,) = blocker.execute("SELECT pg_backend_pid() AS pid").fetchall()
        result = sub.cli("sync", "--all", "--timeout", "6")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.exit_code == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "did not catch up" in line]
    assert lines, result.stderr
    for line in lines:
        assert "its apply worker (pid " in line and f"held by pid {pid['pid']} (idle in transaction)" in line
        assert "synchronized_standby_slots" not in line

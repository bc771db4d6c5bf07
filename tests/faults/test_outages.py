"""Servers that go away, commands that race, and big transactions, in the middle of the work.

After each: the next `attach` or `tick` converges, the harness's SQL oracle finds every replica
equal to its Leader list (and `verify` must agree with it), and no dossier or face is lost,
duplicated, leaked into another list or left without its dossier.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgsync_dossier import config as config_module
from pgsync_dossier import scheduler
from tests.harness import (
    KILLED,
    NIGHTLY,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    group_names,
    list_rows,
    make_list,
    wait_until,
)


def _bulk(leader: Site, list_id: int, count: int) -> None:
    """`count` dossiers with one 2 KB face each, in one statement per table."""
    leader.node.execute(
        "WITH d AS (INSERT INTO dossier (dossier_list_id, name) SELECT %(l)s, 'bulk ' || g "
        "FROM generate_series(1, %(n)s) g RETURNING id) "
        "INSERT INTO dossier_face (dossier_id, embedding, model) SELECT id, gen_random_uuid()::text::bytea "
        "|| decode(repeat('ab', 1000), 'hex'), 'm' FROM d",
        {"l": list_id, "n": count},
    )


def _equal_and_nothing_leaked(leader: Site, sub: Site, pairs: list[tuple[int, int]]) -> None:
    """`sync --all` exits 0; the oracle finds each replica of `pairs` (the lists the test
    attached) exactly its Leader list, no face apart from its dossier, and not one dossier or
    face outside them; `verify` agrees; one slot per group."""
    result = sub.cli("sync", "--all")
    assert result.exit_code == 0, result.stderr
    assert_converged(leader, sub, pairs, outside={"dossier": 0, "dossier_face": 0})
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == len(group_names(sub))


def _copying(sub: Site) -> bool:
    rows = sub.node.execute(
        "SELECT coalesce(sum(tuples_processed), 0) AS n FROM pg_stat_progress_copy p "
        "JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'pgsync-dossier copy%%'"
    )
    return int(rows[0]["n"]) > 0


def _attach_in_background(
    sub: Site, args: tuple[str, ...], fault: str | None = None
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=sub.run(*args, fault=fault)))
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("who", ["leader", "subscriber"])
def test_a_server_stopped_mid_copy(sites: dict[str, Site], who: str) -> None:
    """The Leader stopped with -m immediate, or the Subscriber restarted, while a list is
    being copied: attach fails cleanly, and attach again finishes the job."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Big"), make_list(sub.node, "Big replica")
    _bulk(leader, remote, 40_000)
    thread, outcome = _attach_in_background(sub, attach_args(leader.leader_url, remote, local))
    wait_until(lambda: _copying(sub), "the copy to start", 60)
    victim = (leader if who == "leader" else sub).node.cluster
    victim.stop(mode="immediate")
    victim.start()
    thread.join(120)
    assert outcome["result"].exit_code in (1, 4), outcome["result"].stderr
    assert "Traceback" not in outcome["result"].stderr
    again = sub.run(*attach_args(leader.leader_url, remote, local))
    assert again.exit_code == 0, again.stderr
    _equal_and_nothing_leaked(leader, sub, [(remote, local)])


def _two_lists(leader: Site, sub: Site, dossiers: int) -> list[tuple[int, int]]:
    """Two Leader lists of `dossiers` each (one face apiece) and an empty local list for each."""
    pairs = []
    for name in ("A", "B"):
        remote, local = make_list(leader.node, name), make_list(sub.node, f"{name} replica")
        add_dossiers(leader.node, remote, dossiers, faces_each=1)
        pairs.append((remote, local))
    return pairs


def test_two_attaches_race_for_one_list_and_two_for_one_group(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _two_lists(leader, sub, 20)
    (a, a_local), (b, b_local) = pairs
    racers = [
        _attach_in_background(sub, attach_args(leader.leader_url, a, a_local)),
        _attach_in_background(sub, attach_args(leader.leader_url, a, a_local)),  # the same list
        _attach_in_background(sub, attach_args(leader.leader_url, b, b_local)),  # the same group
    ]
    for thread, _outcome in racers:
        thread.join(180)
    codes = [outcome["result"].exit_code for _thread, outcome in racers]
    assert codes[2] == 0 and 0 in codes[:2] and set(codes) <= {0, 3}, [o["result"].stderr for _t, o in racers]
    for _thread, outcome in racers:
        if outcome["result"].exit_code == 3:
            assert "in progress" in outcome["result"].stderr or "busy" in outcome["result"].stderr
    assert len(group_names(sub)) == 1
    _equal_and_nothing_leaked(leader, sub, pairs)


def test_two_first_commands_of_a_new_subscriber_enroll_once(sites: dict[str, Site]) -> None:
    """The first attach stops between keeping its new Leader password and enrolling it; a
    second attach starts right then. It waits for the first, then uses the login the first
    made: neither is told that the Leader's login has a password it does not hold."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _two_lists(leader, sub, 5)
    assert not sub.node.execute("SELECT * FROM pgsync.leader_login")  # not enrolled yet
    first = _attach_in_background(
        sub, attach_args(leader.leader_url, *pairs[0]), fault="enrollment.stored:pause"
    )
    wait_until(lambda: bool(sub.node.execute("SELECT * FROM pgsync.leader_login")), "the password kept", 30)
    second = sub.run(*attach_args(leader.leader_url, *pairs[1]))
    first[0].join(120)
    assert first[1]["result"].exit_code == 0, first[1]["result"].stderr
    assert second.exit_code == 0, second.stderr
    assert (
        len(leader.node.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'pgsync_s_')")) == 1
    )
    _equal_and_nothing_leaked(leader, sub, pairs)


def test_a_100k_row_transaction_while_the_window_is_closed(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 5)
    attach(sub, leader, remote, local, "--schedule", NIGHTLY)
    leader.node.execute(
        "INSERT INTO dossier (dossier_list_id, name) "
        "SELECT %s, 'night ' || g FROM generate_series(1, 100000) g",
        [remote],
    )
    # The window is closed: the subscription is disabled, so nothing can have arrived.
    assert [row["subenabled"] for row in sub.node.execute("SELECT subenabled FROM pg_subscription")] == [
        False
    ]
    tick = sub.run("tick", "--json")  # not due yet: nothing moves
    assert tick.exit_code == 0 and tick.json() == []
    assert len(list_rows(sub.node, local)[0]) == 5
    assert [row["subenabled"] for row in sub.node.execute("SELECT subenabled FROM pg_subscription")] == [
        False
    ]
    outcomes = scheduler.tick(
        config_module.load(sub.config_path),
        clock=lambda: datetime.now(UTC) + timedelta(days=1),
        timeout_s=300,
    )
    assert [o.status for o in outcomes] == ["synced"]
    _equal_and_nothing_leaked(leader, sub, [(remote, local)])


@pytest.mark.parametrize("point", ["repair.paused", "repair.fixed"])
def test_a_repair_killed_mid_way_is_finished_by_tick(sites: dict[str, Site], point: str) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 30, faces_each=1)
    attach(sub, leader, remote, local)
    with sub.node.connect() as conn, conn.transaction():  # damage behind the guard's back
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL pgsync.bulk = on")
        conn.execute("UPDATE dossier SET comment = 'tampered' WHERE dossier_list_id = %s", [local])
    assert sub.run("repair", str(local), "--confirm", fault=point).exit_code == KILLED
    assert len(list_rows(sub.node, local)[0]) == 30  # never empty, whatever the kill
    add_dossiers(leader.node, remote, 2, prefix="meanwhile-")
    assert sub.run("tick").exit_code == 0
    row = sub.ok("status", str(local), "--json").json()[0]
    assert row["state"] == "ready" and row["stream"] == "streaming"
    _equal_and_nothing_leaked(leader, sub, [(remote, local)])

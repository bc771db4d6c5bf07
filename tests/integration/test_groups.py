"""One stream per (Leader, Subscriber, schedule): what version 1 could not do, on real clusters.

Each scenario ends with `sync --all` exiting 0, the harness's SQL oracle finding every replica
equal to its Leader list (and `verify` agreeing with it), no dossier or face anywhere else than
the test expects, none apart from its dossier, and no apply error counted. A command that must
wait for something is seen waiting (wait_for_backend), never given a fixed time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.harness import (
    NIGHTLY,
    TEMPLATE_DB,
    CliResult,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    drop_subscriptions,
    group_names,
    list_rows,
    make_list,
    rows_outside,
    verify_agrees,
    wait_for_backend,
    wait_for_same,
    wait_until,
    write_config,
)

Pairs = list[tuple[int, int]]
#: Rows outside the replicas a test attached: none (its other local lists are empty).
NOTHING_ELSE = {"dossier": 0, "dossier_face": 0}
#: What a command runs on the Leader, over and over, while it waits for the transactions that
#: were in flight at a filter change to end (LeaderClient.wait_xacts_ended).
WAITING_FOR_XACTS = "%pgsync.api_xacts_ended_before%"


def _leader_slots(leader: Site) -> list[str]:
    return [row["slot_name"] for row in leader.node.execute("SELECT slot_name FROM pg_replication_slots")]


def _apply_errors(sub: Site) -> int:
    rows = sub.node.execute(
        "SELECT coalesce(sum(apply_error_count), 0)::int AS n FROM pg_stat_subscription_stats"
    )
    return int(rows[0]["n"])


def _all_synced(result: CliResult) -> None:
    assert result.exit_code == 0, result.stderr
    assert {row["status"] for row in result.json()} == {"synced"}


def _synced_and_equal(leader: Site, sub: Site, pairs: Pairs, outside: dict[str, int] | None = None) -> None:
    """`sync --all` exits 0, the oracle finds each replica of `pairs` (every list the test
    attached) equal to its Leader list, `outside` (by default nothing) is all the Subscriber
    holds elsewhere, `verify` agrees, and no apply error came up on the way (a stream stuck on
    a row would count one per retry)."""
    errors = _apply_errors(sub)
    _all_synced(sub.cli("sync", "--all", "--json"))
    assert_converged(leader, sub, pairs, outside=NOTHING_ELSE if outside is None else outside)
    assert _apply_errors(sub) == errors


def _converged_from_leaders(sub: Site, fed: list[tuple[Site, Pairs]], outside: dict[str, int]) -> None:
    """assert_converged for a Subscriber fed by several Leaders (it takes one Leader, and its
    verify check expects that Leader's pairs to be all the replicas): the oracle on each
    Leader's pairs, the rows outside all of them, then `verify` against that verdict."""
    for leader, pairs in fed:
        assert_converged(leader, sub, pairs, verify=False)
    replicas = [local for _leader, pairs in fed for _remote, local in pairs]
    assert rows_outside(sub, replicas) == outside
    verify_agrees(sub, [pair for _leader, pairs in fed for pair in pairs])


def _no_session_waiting_for_xacts(leader: Site) -> None:
    """Until no session of the Leader shows WAITING_FOR_XACTS as its last statement (an earlier
    command's, on its way out): what wait_for_backend then finds is the command started next."""
    wait_until(
        lambda: (
            not leader.node.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query LIKE %s",
                [WAITING_FOR_XACTS],
            )
        ),
        "the Leader sessions of earlier commands to end",
    )


def _attached_lists(
    sites: dict[str, Site], count: int, per_list: int = 3, *extra: str
) -> list[tuple[int, int]]:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = []
    for n in range(count):
        remote = make_list(leader.node, f"L{n}")
        add_dossiers(leader.node, remote, per_list, prefix=f"l{n}-")
        make_list(sub.node, f"pad{n}")  # different ids on each side
        local = make_list(sub.node, f"T{n}")
        attach(sub, leader, remote, local, *extra)
        pairs.append((remote, local))
    return pairs


def test_three_lists_share_one_slot_and_one_subscription(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _attached_lists(sites, 3)
    assert len(_leader_slots(leader)) == 1 and len(group_names(sub)) == 1
    assert len(sub.node.execute("SELECT * FROM pg_subscription")) == 1
    for n, (remote, _local) in enumerate(pairs):
        add_dossiers(leader.node, remote, 2, prefix=f"later{n}-")
    for remote, local in pairs:
        wait_for_same(leader.node, remote, sub.node, local)
    _synced_and_equal(leader, sub, pairs)


def test_a_sync_leaves_a_streaming_subscription_alone(sites: dict[str, Site]) -> None:
    """Nothing is rewritten while the stream's password file is there: no ALTER SUBSCRIPTION
    (which restarts the apply worker) and no new file. Without the file (a restore, say) the
    next sync writes it again."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    ((remote, local),) = _attached_lists(sites, 1)
    (row,) = sub.node.execute("SELECT subconninfo FROM pg_subscription")
    passfile = Path(row["subconninfo"].split("passfile=")[1].split()[0].strip("'"))

    def worker() -> int | None:
        rows = sub.node.execute(
            "SELECT pid FROM pg_stat_subscription WHERE relid IS NULL AND pid IS NOT NULL"
        )
        return rows[0]["pid"] if rows else None

    pid = wait_until(worker, "the group's apply worker to run")
    written = passfile.stat().st_mtime_ns
    for _ in range(2):
        sub.ok("sync", str(local))
        sub.ok("tick")
    assert worker() == pid and passfile.stat().st_mtime_ns == written
    passfile.unlink()
    sub.ok("sync", str(local))
    assert passfile.stat().st_mode & 0o777 == 0o600
    add_dossiers(leader.node, remote, 2, prefix="after-restore-")
    _synced_and_equal(leader, sub, [(remote, local)])


@pytest.mark.parametrize("schedule", [None, NIGHTLY], ids=["continuous", "windowed"])
def test_a_swap_between_two_replicated_lists_in_one_transaction(
    sites: dict[str, Site], schedule: str | None
) -> None:
    """Version 1 deadlocked both subscriptions for good: an INSERT on one, a DELETE on the other."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    extra = ("--schedule", schedule) if schedule else ()
    pairs = _attached_lists(sites, 2, 3, *extra)
    (a, _ta), (b, _tb) = pairs
    x = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [a])[0]["id"]
    y = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [b])[0]["id"]
    with leader.node.connect() as conn, conn.transaction():
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [b, x])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [a, y])
    _synced_and_equal(leader, sub, pairs)
    _synced_and_equal(leader, sub, pairs)  # and again: nothing is left stuck


def test_rotating_bulk_moves_across_three_lists_in_one_transaction(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _attached_lists(sites, 3, 20)
    (a, _), (b, _), (c, _) = pairs
    leader.node.execute(
        "UPDATE dossier SET dossier_list_id = CASE dossier_list_id WHEN %(a)s THEN %(c)s "
        "WHEN %(c)s THEN %(b)s WHEN %(b)s THEN %(a)s END WHERE dossier_list_id IN (%(a)s, %(b)s, %(c)s)",
        {"a": a, "b": b, "c": c},
    )
    _synced_and_equal(leader, sub, pairs)


@pytest.mark.parametrize("group_exists", [False, True], ids=["new-group", "existing-group"])
def test_an_attach_during_a_leader_transaction_loses_none_of_its_rows(
    sites: dict[str, Site], group_exists: bool
) -> None:
    """Rows written before the filter is widened by a transaction that commits after it are
    never published (docs/design-notes.md, "Version 2"): the copy must wait for that transaction."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _attached_lists(sites, 1) if group_exists else []
    remote, local = make_list(leader.node, "Busy"), make_list(sub.node, "Busy replica")
    pairs.append((remote, local))
    add_dossiers(leader.node, remote, 2, prefix="before-")
    writer = leader.node.connect()
    writer.execute("BEGIN")
    for n in range(5):
        writer.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, %s)", [remote, f"inflight-{n}"]
        )
    outcome: dict[str, Any] = {}
    _no_session_waiting_for_xacts(leader)
    thread = threading.Thread(
        target=lambda: outcome.update(result=sub.run(*attach_args(leader.leader_url, remote, local)))
    )
    thread.start()
    if group_exists:  # the filter widened, it waits for the transactions then in flight
        wait_for_backend(leader, "the attach waiting for the writer in flight", query_like=WAITING_FOR_XACTS)
    else:  # the new group's slot is made only once the transactions in flight have ended
        wait_for_backend(
            leader,
            "the new group's slot waiting for the transaction in flight",
            query_like="CREATE_REPLICATION_SLOT%",
            wait_event_type="Lock",
        )
    assert thread.is_alive(), outcome  # it waits for the transaction
    for n in range(5, 8):
        writer.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, %s)", [remote, f"inflight-{n}"]
        )
    writer.execute("COMMIT")
    writer.close()
    thread.join(120)
    assert outcome["result"].exit_code == 0, outcome["result"].stderr
    names = {row["name"] for row in list_rows(sub.node, local)[0]}
    assert {f"inflight-{n}" for n in range(8)} <= names
    _synced_and_equal(leader, sub, pairs)


def test_a_move_out_of_a_detached_but_kept_list_arrives(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    (kept, kept_local), (live, live_local) = _attached_lists(sites, 2)
    sub.ok("detach", str(kept_local))
    mover = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [kept])[0]["id"]
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [live, mover])
    # The kept list keeps its other 2 dossiers and their 4 faces; the mover's went with it.
    _synced_and_equal(leader, sub, [(live, live_local)], outside={"dossier": 2, "dossier_face": 4})
    assert sub.node.execute("SELECT dossier_list_id FROM dossier WHERE id = %s", [mover]) == [
        {"dossier_list_id": live_local}
    ]
    assert len(list_rows(sub.node, kept_local)[0]) == 2  # the kept list keeps the rest


def test_a_truncate_then_a_reload_with_the_same_ids_converges(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = _attached_lists(sites, 1, 4)
    ((_remote, local),) = pairs
    with leader.node.connect() as conn, conn.transaction():
        dossiers = conn.execute("SELECT * FROM dossier").fetchall()
        faces = conn.execute("SELECT * FROM dossier_face").fetchall()
        conn.execute("TRUNCATE dossier CASCADE")
        for row in dossiers:
            conn.execute(
                "INSERT INTO dossier (id, dossier_list_id, name, comment) VALUES (%s, %s, %s, 'reloaded')",
                [row["id"], row["dossier_list_id"], row["name"]],
            )
        for row in faces:
            conn.execute(
                "INSERT INTO dossier_face (id, dossier_id, embedding, model) VALUES (%s, %s, %s, %s)",
                [row["id"], row["dossier_id"], row["embedding"], row["model"]],
            )
    _synced_and_equal(leader, sub, pairs)
    assert {row["comment"] for row in list_rows(sub.node, local)[0]} == {"reloaded"}


def test_a_move_between_two_streams_never_loses_the_row(sites: dict[str, Site]) -> None:
    """Lists with different schedules are two streams, each ahead of or behind the other: a
    row moved between them is kept by the newer version, whichever stream applies first."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    live, live_local = make_list(leader.node, "Live"), make_list(sub.node, "Live replica")
    nightly, nightly_local = make_list(leader.node, "Nightly"), make_list(sub.node, "Nightly replica")
    add_dossiers(leader.node, live, 2, prefix="live-")
    add_dossiers(leader.node, nightly, 2, prefix="nightly-")
    attach(sub, leader, live, live_local)
    attach(sub, leader, nightly, nightly_local, "--schedule", NIGHTLY)
    assert len(group_names(sub)) == 2 and len(_leader_slots(leader)) == 2
    into_live = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [nightly])[
        0
    ]["id"]
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [live, into_live])
    # Created in the nightly list, then moved to the live one: the live stream has it first.
    born = add_dossiers(leader.node, nightly, 1, prefix="born-")[0]
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [live, born])
    wait_for_same(leader.node, live, sub.node, live_local)
    # The nightly stream replays the older states and the moves out: the rows stay in Live.
    _synced_and_equal(leader, sub, [(live, live_local), (nightly, nightly_local)])
    for dossier_id in (into_live, born):
        assert sub.node.execute("SELECT dossier_list_id FROM dossier WHERE id = %s", [dossier_id]) == [
            {"dossier_list_id": live_local}
        ]


def test_a_move_applied_by_both_streams_at_once_keeps_the_row(sites: dict[str, Site]) -> None:
    """A dossier moved from a live list into a nightly one leaves the live stream as a DELETE
    and enters the nightly stream as an INSERT, which finds the row still here and moves it.
    When the two apply at once, the move waits for the DELETE's row lock and then finds no
    row: the dossier must be inserted then, not dropped (its faces, which come next, were)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    live, live_local = make_list(leader.node, "Live"), make_list(sub.node, "Live replica")
    nightly, nightly_local = make_list(leader.node, "Nightly"), make_list(sub.node, "Nightly replica")
    moved, held = add_dossiers(leader.node, live, 2, prefix="live-")
    add_dossiers(leader.node, nightly, 1, prefix="nightly-")
    attach(sub, leader, live, live_local)
    attach(sub, leader, nightly, nightly_local, "--schedule", NIGHTLY)

    def waiting() -> int:
        return int(sub.node.execute("SELECT count(*) AS n FROM pg_locks WHERE NOT granted")[0]["n"])

    with sub.node.connect() as blocker:
        # The live stream's transaction deletes `moved`, then waits here on `held`.
        blocker.execute("BEGIN")
        blocker.execute("SELECT 1 FROM dossier WHERE id = %s FOR UPDATE", [held])
        with leader.node.connect() as writer, writer.transaction():
            writer.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [nightly, moved])
            writer.execute("UPDATE dossier SET comment = 'held' WHERE id = %s", [held])
        wait_until(lambda: waiting() >= 1, "the live stream to wait on the held row")
        outcome: dict[str, Any] = {}
        window = threading.Thread(target=lambda: outcome.update(result=sub.run("sync", str(nightly_local))))
        window.start()
        wait_until(lambda: waiting() >= 2, "the nightly stream to wait on the live stream's DELETE")
        blocker.execute("ROLLBACK")
    window.join(120)
    assert outcome["result"].exit_code == 0, outcome["result"].stderr
    _synced_and_equal(leader, sub, [(live, live_local), (nightly, nightly_local)])
    assert sub.node.execute("SELECT dossier_list_id FROM dossier WHERE id = %s", [moved]) == [
        {"dossier_list_id": nightly_local}
    ]


def test_detach_narrows_the_filter_and_the_last_list_drops_the_stream(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    (first, first_local), (second, second_local) = _attached_lists(sites, 2)
    (name,) = group_names(sub)
    registered = leader.node.execute("SELECT lists FROM pgsync.group_registration WHERE name = %s", [name])
    assert sorted(registered[0]["lists"]) == sorted([first, second])
    sub.ok("detach", str(first_local))
    registered = leader.node.execute("SELECT lists FROM pgsync.group_registration WHERE name = %s", [name])
    assert registered[0]["lists"] == [second]
    add_dossiers(leader.node, first, 1, prefix="after-detach-")
    add_dossiers(leader.node, second, 1, prefix="after-detach-")
    wait_for_same(leader.node, second, sub.node, second_local)
    assert not [r for r in list_rows(sub.node, first_local)[0] if r["name"].startswith("after-detach")]
    # The detached list kept its 3 dossiers and their 6 faces, and nothing more came into it.
    assert_converged(leader, sub, [(second, second_local)], outside={"dossier": 3, "dossier_face": 6})
    sub.ok("detach", str(second_local))
    assert not _leader_slots(leader) and not leader.node.execute("SELECT * FROM pg_publication")
    assert not leader.node.execute("SELECT * FROM pgsync.group_registration")
    assert not sub.node.execute("SELECT * FROM pg_subscription") and not group_names(sub)


def test_a_detach_lets_a_leader_transaction_in_flight_arrive_before_it_purges(sites: dict[str, Site]) -> None:
    """A Leader transaction that wrote into the list before the detach narrowed the filter is
    published with the old filter when it commits. The detach must let it arrive before its
    barrier: applied after it, while the list is purged, its rows would stay behind (the soak
    found its face without its dossier)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    (first, first_local), (second, second_local) = _attached_lists(sites, 2)
    outcome: dict[str, Any] = {}
    with leader.node.connect() as writer:
        writer.execute("BEGIN")
        (row,) = writer.execute(
            "INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'in flight') RETURNING id", [first]
        ).fetchall()
        writer.execute(
            "INSERT INTO dossier_face (dossier_id, embedding, model) VALUES (%s, 'x', 'm')", [row["id"]]
        )
        detaching = threading.Thread(
            target=lambda: outcome.update(result=sub.run("detach", str(first_local), "--purge", "--json"))
        )
        _no_session_waiting_for_xacts(leader)
        detaching.start()
        wait_for_backend(leader, "the detach waiting for the writer in flight", query_like=WAITING_FOR_XACTS)
        assert detaching.is_alive(), "the detach passed its barrier before the writer committed"
        writer.execute("COMMIT")
    detaching.join(60)
    assert outcome["result"].exit_code == 0, outcome["result"].stderr
    assert outcome["result"].json()["kept_in_transit"] == 0
    add_dossiers(leader.node, second, 1, prefix="after-")
    wait_for_same(leader.node, second, sub.node, second_local)
    assert list_rows(sub.node, first_local) == ([], [])
    # Purged, with no face of the transaction in flight left behind without its dossier.
    assert_converged(leader, sub, [(second, second_local)], outside=NOTHING_ELSE)


def test_a_list_detached_while_the_leader_is_down_is_narrowed_later(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    (first, first_local), (second, second_local) = _attached_lists(sites, 2)
    leader.node.cluster.stop()
    try:
        result = sub.ok("detach", str(first_local), "--json").json()
        assert result["leader_reachable"] is False and result["caught_up"] is False
    finally:
        leader.node.cluster.start()
    add_dossiers(leader.node, first, 1, prefix="ignored-")  # still in the filter: skipped here
    # The detached list keeps its 3 dossiers and their 6 faces, and gains nothing.
    _synced_and_equal(leader, sub, [(second, second_local)], outside={"dossier": 3, "dossier_face": 6})
    assert leader.node.execute("SELECT lists FROM pgsync.group_registration")[0]["lists"] == [second]
    assert not [r for r in list_rows(sub.node, first_local)[0] if r["name"].startswith("ignored")]


def test_leader_status_shows_each_group_once_per_list(sites: dict[str, Site]) -> None:
    leader = sites["leader"]
    _attached_lists(sites, 2)
    rows = leader.ok("status", "--json").json()
    assert len(rows) == 2 and all(len(row["subscribers"]) == 1 for row in rows)
    assert rows[0]["subscribers"][0]["group"] == rows[1]["subscribers"][0]["group"]


# -- a Subscriber with PostgreSQL's default limits (the harness's default_subscriber) ------------
def test_thirty_lists_on_a_subscriber_with_default_worker_settings(
    sites: dict[str, Site], default_subscriber: Site
) -> None:
    leader, sub = sites["leader"], default_subscriber
    pairs = []
    for n in range(30):
        remote = make_list(leader.node, f"L{n}")
        add_dossiers(leader.node, remote, 1, faces_each=1, prefix=f"l{n}-")
        local = make_list(sub.node, f"T{n}")
        pairs.append((remote, local))
    for remote, local in pairs:
        attach(sub, leader, remote, local)
    assert len(_leader_slots(leader)) == 1 and len(group_names(sub)) == 1
    for remote, _local in pairs[::7]:
        add_dossiers(leader.node, remote, 1, faces_each=1, prefix="later-")
    _synced_and_equal(leader, sub, pairs)
    rows = sub.ok("status", "--json").json()
    assert len(rows) == 30 and {row["state"] for row in rows} == {"ready"}


def test_no_room_for_another_stream_is_refused_with_the_fix(
    sites: dict[str, Site], default_subscriber: Site
) -> None:
    """Version 1 hung on "out of background worker slots"; now the refusal says what to set."""
    leader, sub = sites["leader"], default_subscriber
    leader_conninfo = leader.node.url
    for n in range(4):  # the default max_logical_replication_workers: every worker spoken for
        sub.node.execute(
            psycopg.sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION p WITH (connect = false, enabled = false)"
            ).format(psycopg.sql.Identifier(f"other_{n}"), psycopg.sql.Literal(leader_conninfo))
        )
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    result = sub.cli(*attach_args(leader.leader_url, remote, local))
    assert result.exit_code == 3, result.stderr
    assert "max_logical_replication_workers is 4" in result.stderr
    assert "ALTER SYSTEM SET max_logical_replication_workers" in result.stderr
    assert not sub.node.execute("SELECT * FROM pgsync.link") and not group_names(sub)
    assert not _leader_slots(leader) and not leader.node.execute("SELECT * FROM pg_publication")


def test_an_attach_takes_over_rows_that_are_already_here(sites: dict[str, Site]) -> None:
    """Rows of a newly attached list may exist here already (kept from a detached list): the
    direct copy meets them in the unique index, and the merge takes them over instead."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    ((kept, kept_local),) = _attached_lists(sites, 1, 4)
    sub.ok("detach", str(kept_local))
    target, target_local = make_list(leader.node, "Target"), make_list(sub.node, "Target replica")
    add_dossiers(leader.node, target, 2, prefix="target-")
    moved = [
        row["id"] for row in leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s", [kept])
    ][:2]
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = ANY (%s)", [target, moved])
    result = attach(sub, leader, target, target_local)
    assert result["dossiers"] == 4 and result["faces"] == 8
    # What stayed in the kept list: 2 dossiers and their 4 faces.
    kept_rows = {"dossier": 2, "dossier_face": 4}
    assert_converged(leader, sub, [(target, target_local)], outside=kept_rows)
    assert len(list_rows(sub.node, kept_local)[0]) == 2  # what stayed in the kept list
    _synced_and_equal(leader, sub, [(target, target_local)], outside=kept_rows)


@pytest.fixture
def second_leader(nodes: dict[str, Node], tmp_path: Path) -> Iterator[Site]:
    """Another Leader, in its own database on subscriber B's cluster."""
    cluster = nodes["subscriber_b"].cluster
    node = Node("second leader", cluster, "Second Leader's DB")
    node.janitor(node.dbname).drop()
    node.janitor(node.dbname, template=TEMPLATE_DB).init()
    site = Site(node, write_config(tmp_path / "second-leader.yaml", node, "leader", node_name="hq-2"))
    site.ok("setup")
    yield site
    drop_subscriptions(nodes["subscriber_a"])
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    node.janitor(node.dbname).drop()


def test_groups_of_different_leaders_sync_at_the_same_time(
    sites: dict[str, Site], second_leader: Site
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    first, first_local = make_list(leader.node, "First"), make_list(sub.node, "From the first Leader")
    second, second_local = make_list(second_leader.node, "Second"), make_list(sub.node, "From the second")
    attach(sub, leader, first, first_local)
    attach(sub, second_leader, second, second_local)
    assert len(group_names(sub)) == 2
    add_dossiers(leader.node, first, 2)
    add_dossiers(second_leader.node, second, 2)
    # Both Leaders answer slowly (their heartbeat rows are locked) until the sync waits on each
    # of them at once: a sync that took the Leaders one after the other would wait on the first
    # and never reach the second.
    errors = _apply_errors(sub)
    outcome: dict[str, CliResult] = {}
    with leader.node.connect() as first_holder, second_leader.node.connect() as second_holder:
        for holder in (first_holder, second_holder):
            holder.execute("BEGIN")
            holder.execute("SELECT * FROM pgsync.heartbeat FOR UPDATE")
        syncing = threading.Thread(target=lambda: outcome.update(result=sub.run("sync", "--all", "--json")))
        syncing.start()
        try:
            for side in (leader, second_leader):
                wait_for_backend(
                    side,
                    f"the sync waiting on {side.node.name}'s heartbeat",
                    query_like="%pgsync.api_%",  # the Leader API's call that bumps the heartbeat
                    wait_event_type="Lock",
                )
        finally:
            for holder in (first_holder, second_holder):
                holder.execute("COMMIT")
            syncing.join(120)
    _all_synced(outcome["result"])
    fed = [(leader, [(first, first_local)]), (second_leader, [(second, second_local)])]
    _converged_from_leaders(sub, fed, NOTHING_ELSE)
    assert _apply_errors(sub) == errors
    runs = sub.node.execute(
        "SELECT g.leader_node_name AS leader, r.started_at, r.finished_at FROM pgsync.sync_run r "
        "JOIN pgsync.sync_group g ON g.id = r.group_id WHERE r.reason = 'manual' ORDER BY r.id"
    )
    first_run = next(r for r in runs if r["leader"] == "leader site")
    second_run = next(r for r in runs if r["leader"] == "hq-2")
    assert first_run["started_at"] < second_run["finished_at"]
    assert second_run["started_at"] < first_run["finished_at"]


@pytest.mark.parametrize("kind", ["attach", "repair"])
def test_a_move_made_between_windows_survives_a_copy_or_repair_of_its_list(
    sites: dict[str, Site], kind: str
) -> None:
    """A windowed stream is paused long before a copy or repair of one of its lists takes its
    snapshot. A dossier the Leader moved between two of its lists meanwhile is in that
    snapshot in its new list, and the stream still holds the move (decoded as a DELETE when
    the new list was not yet in the filter). Replayed after the copy, it must not undo it."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    ((a, a_local),) = _attached_lists(sites, 1, 3, "--schedule", NIGHTLY)
    b, b_local = make_list(leader.node, "B"), make_list(sub.node, "T-B")
    add_dossiers(leader.node, b, 2, prefix="b-")
    if kind == "repair":
        attach(sub, leader, b, b_local, "--schedule", NIGHTLY)
    x = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [a])[0]["id"]
    y = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [b])[0]["id"]
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [b, x])
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [a, y])
    if kind == "attach":
        attach(sub, leader, b, b_local, "--schedule", NIGHTLY)
    else:
        sub.ok("repair", str(b_local), "--confirm")
    assert len(group_names(sub)) == 1
    _synced_and_equal(leader, sub, [(a, a_local), (b, b_local)])


def test_moves_in_and_out_of_a_list_while_it_is_attached_are_kept(sites: dict[str, Site]) -> None:
    """A Leader transaction in flight while list N is attached moves one dossier from A into N
    before the filter is widened (decoded as a DELETE from A) and one from N into A after it
    (an UPDATE of a row that is not here yet). Replayed after the copy, the first deleted
    the copied row and the second found nothing to move."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    ((a, a_local),) = _attached_lists(sites, 1, 3)
    n, n_local = make_list(leader.node, "N"), make_list(sub.node, "T-N")
    add_dossiers(leader.node, n, 3, prefix="n-")
    x = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [a])[0]["id"]
    y = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [n])[0]["id"]
    writer = leader.node.connect()
    writer.execute("BEGIN")
    writer.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [n, x])
    outcome: dict[str, Any] = {}
    _no_session_waiting_for_xacts(leader)
    thread = threading.Thread(
        target=lambda: outcome.update(result=sub.run(*attach_args(leader.leader_url, n, n_local)))
    )
    thread.start()
    wait_for_backend(leader, "the attach waiting for the transaction in flight", query_like=WAITING_FOR_XACTS)
    assert thread.is_alive(), outcome  # it waits for the transaction
    writer.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [a, y])
    writer.execute("COMMIT")
    writer.close()
    thread.join(120)
    assert outcome["result"].exit_code == 0, outcome["result"].stderr
    _synced_and_equal(leader, sub, [(a, a_local), (n, n_local)])
    assert {row["id"] for row in list_rows(sub.node, n_local)[0]} >= {x}
    assert {row["id"] for row in list_rows(sub.node, a_local)[0]} >= {y}

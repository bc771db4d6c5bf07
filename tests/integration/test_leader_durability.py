"""A copy never holds what the Leader can still lose, and a node never forgets what it made.

With `synchronous_commit = off` (the Leader's choice, not ours), a transaction is visible to
other sessions before its commit record is flushed, and a crash loses it on the Leader. The
stream never sends such a transaction (a walsender sends flushed WAL only), but the
orchestrator's own copy reads the Leader at a snapshot: it could copy a change that the Leader
then loses, and a dossier moved by that change would end up in the wrong list here, missing
from the list where the Leader still has it. Found by the soak (a move of three dossiers, read
by an attach's copy shortly before the Leader was stopped with `-m immediate`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.harness import (
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    group_names,
    make_list,
    wait_until,
)

#: The longest the WAL writer may wait: a commit made with synchronous_commit off stays
#: unflushed that long unless something else flushes it.
WAL_WRITER_DELAY = "10s"


@contextmanager
def _slow_wal_writer(site: Site) -> Iterator[Site]:
    site.node.execute(f"ALTER SYSTEM SET wal_writer_delay = '{WAL_WRITER_DELAY}'")
    site.node.execute("SELECT pg_reload_conf()")
    try:
        yield site
    finally:
        if not _accepting(site):
            site.node.cluster.start()
        site.node.execute("ALTER SYSTEM RESET wal_writer_delay")
        site.node.execute("SELECT pg_reload_conf()")


@pytest.fixture
def slow_wal_writer(sites: dict[str, Site]) -> Iterator[Site]:
    with _slow_wal_writer(sites["leader"]) as leader:
        yield leader


def _accepting(site: Site) -> bool:
    try:
        site.node.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_a_copy_waits_until_what_it_read_is_durable_on_the_leader(
    sites: dict[str, Site], slow_wal_writer: Site
) -> None:
    leader, sub = slow_wal_writer, sites["subscriber_a"]
    wanted, guests = make_list(leader.node, "wanted"), make_list(leader.node, "guests")
    moved = add_dossiers(leader.node, wanted, 3, faces_each=1, prefix="moved")
    add_dossiers(leader.node, guests, 2, faces_each=1, prefix="guest")
    local_wanted, local_guests = make_list(sub.node, "wanted here"), make_list(sub.node, "guests here")
    attach(sub, leader, wanted, local_wanted)

    # The guests' list joins a group of its own (another schedule); its attach is held after the
    # Leader's filter names it, and meanwhile the three dossiers move into it, committed on the
    # Leader with synchronous_commit off: visible at once, flushed only later.
    result: dict[str, object] = {}

    def attach_guests() -> None:
        result["done"] = sub.run(
            *attach_args(leader.leader_url, guests, local_guests),
            "--schedule",
            "FREQ=DAILY;BYHOUR=3",
            "--timeout",
            "60",
            fault="copy.widened:pause",
        )

    attaching = threading.Thread(target=attach_guests)
    attaching.start()
    wait_until(
        lambda: (
            len(leader.node.execute("SELECT 1 FROM pg_replication_slots WHERE slot_type = 'logical'")) == 2
            or not attaching.is_alive()
        ),
        "the guests' group's slot made (making a slot flushes the Leader's WAL)",
    )
    assert attaching.is_alive(), result
    time.sleep(0.5)  # inside the 3 s pause after the filter names the list, before the copy
    with leader.node.connect() as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = ANY(%s)", [guests, moved])

    # As soon as the copy could have taken them, the Leader crashes: what it had not flushed is gone.
    wait_until(
        lambda: (
            sub.node.execute(
                "SELECT 1 FROM dossier WHERE dossier_list_id = %s AND id = ANY(%s)", [local_guests, moved]
            )
            or not attaching.is_alive()
        ),
        "the attach's copy (or its end)",
    )
    leader.node.cluster.stop(mode="immediate")
    attaching.join()
    leader.node.cluster.start()
    leader.node.execute("ALTER SYSTEM RESET wal_writer_delay")  # the barriers from here on wait for it
    leader.node.execute("SELECT pg_reload_conf()")
    # The copy flushed the Leader's WAL up to its snapshot before it took anything: the move it
    # copied survived the crash. (Before that, the Leader lost it and the three dossiers stayed
    # in the guests' list here, gone from the wanted list: the soak's "dossiers lost".)
    in_guests = leader.node.execute(
        "SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s AND id = ANY(%s)", [guests, moved]
    )[0]["n"]
    assert in_guests == 3, "the Leader lost a move that the copy had read"

    sub.run(*attach_args(leader.leader_url, guests, local_guests), "--schedule", "FREQ=DAILY;BYHOUR=3")
    sub.ok("sync", "--all", "--timeout", "60")
    assert_converged(leader, sub, [(wanted, local_wanted), (guests, local_guests)])


def test_a_subscriber_that_crashes_mid_attach_keeps_what_it_made(sites: dict[str, Site]) -> None:
    """The Subscriber's own commits are durable (pg.connect: synchronous_commit = local): with
    the server's synchronous_commit off, a crash after the attach had made its group and the
    Leader its slot lost the group here, the next attach made another, and the Leader kept
    the first slot, and its WAL, for ever (CI's test_a_server_stopped_mid_copy[subscriber]
    found it once)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "wanted"), make_list(sub.node, "wanted here")
    add_dossiers(leader.node, remote, 5, faces_each=1)
    with _slow_wal_writer(sub):
        attaching = threading.Thread(
            target=lambda: sub.run(*attach_args(leader.leader_url, remote, local), fault="copy.paused:pause")
        )
        attaching.start()
        wait_until(lambda: leader.node.execute("SELECT 1 FROM pg_replication_slots"), "the group's slot")
        time.sleep(1.0)  # the subscription made and paused: inside the 3 s pause at copy.paused
        sub.node.cluster.stop(mode="immediate")
        attaching.join()
        sub.node.cluster.start()
    sub.ok(*attach_args(leader.leader_url, remote, local))
    slots = [row["slot_name"] for row in leader.node.execute("SELECT slot_name FROM pg_replication_slots")]
    assert slots == group_names(sub), "a slot on the Leader that no group here knows"
    assert_converged(leader, sub, [(remote, local)])

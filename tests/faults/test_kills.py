"""`kill -9` of a command at each named point (pgsync_dossier.faults), then the next command.

Each case runs the installed entry point in its own process with one fault point armed; the
process dies there with SIGKILL, the Leader keeps writing, and then a plain `attach` again (or
a `tick`, as the systemd timer would) must converge: `sync --all` exits 0, the harness's SQL
oracle finds every replica equal to its Leader list, row by row (and `verify` must agree with
it), one stream and one slot per group, nothing left behind, no row lost or duplicated, no
dossier or face leaked into another list or left without its dossier.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pgsync_dossier.faults import POINTS
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

ATTACH_POINTS = [
    "attach.link_recorded",
    "group.registered",
    "group.subscribed",
    "copy.paused",
    "copy.widened",
    "copy.first_table",
    "copy.written",
    "copy.copied",
    "sync.window_open",
]
#: Every point of an attach that makes a new group (a group with other lists only has
#: other lists to settle); an attach into a group that already streams passes all but the
#: group's creation.
ATTACH_CASES = [(point, False) for point in ATTACH_POINTS if point != "copy.written"] + [
    (point, True) for point in ATTACH_POINTS if not point.startswith("group.")
]


def _converged(
    leader: Site, sub: Site, pairs: list[tuple[int, int]], kept_dossiers: int = 0, kept_faces: int = 0
) -> None:
    """`sync --all` exits 0, the oracle finds each replica of `pairs` (the lists this test
    attached) exactly its Leader list and no face apart from its dossier, `verify` agrees, and
    outside the replicas there are only the rows of detached lists (`kept_dossiers` and
    `kept_faces`, which stay here as ordinary rows); one group, one stream, one slot."""
    result = sub.cli("sync", "--all")
    assert result.exit_code == 0, result.stderr
    assert_converged(leader, sub, pairs, outside={"dossier": kept_dossiers, "dossier_face": kept_faces})
    assert len(group_names(sub)) == 1
    assert len(sub.node.execute("SELECT * FROM pg_subscription")) == 1
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots")) == 1
    assert not sub.node.execute("SELECT * FROM pgsync.orphan_slot")
    assert sub.node.execute("SELECT copying_list_id FROM pgsync.sync_group")[0]["copying_list_id"] is None


def test_every_point_is_covered() -> None:
    covered = {*ATTACH_POINTS, "detach.narrowed", "detach.group_dropped"}
    covered |= {"repair.paused", "repair.fixed"}  # test_outages.py
    covered |= {"enrollment.stored"}  # below
    assert covered == set(POINTS)


def test_a_first_attach_killed_before_its_login_is_enrolled(sites: dict[str, Site]) -> None:
    """Killed after keeping its new password, before the Leader knows it: the next attach
    enrolls with a new one."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 4)
    killed = sub.run(*attach_args(leader.leader_url, remote, local), fault="enrollment.stored")
    assert killed.exit_code == KILLED, killed.stderr
    again = sub.run(*attach_args(leader.leader_url, remote, local))
    assert again.exit_code == 0, again.stderr
    _converged(leader, sub, [(remote, local)])


@pytest.mark.parametrize(
    ("point", "existing_group"),
    ATTACH_CASES,
    ids=[f"{point}-{'existing' if existing else 'new'}-group" for point, existing in ATTACH_CASES],
)
def test_attach_killed_then_attach_again(sites: dict[str, Site], point: str, existing_group: bool) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = []
    if existing_group:
        first, first_local = make_list(leader.node, "First"), make_list(sub.node, "First replica")
        add_dossiers(leader.node, first, 3, prefix="first-")
        attach(sub, leader, first, first_local)
        pairs.append((first, first_local))
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 6)
    killed = sub.run(*attach_args(leader.leader_url, remote, local), fault=point)
    assert killed.exit_code == KILLED, killed.stderr
    pairs.append((remote, local))
    for other, _local in pairs:  # the Leader goes on meanwhile
        add_dossiers(leader.node, other, 2, prefix="meanwhile-")
    again = sub.run(*attach_args(leader.leader_url, remote, local))
    assert again.exit_code == 0, again.stderr
    _converged(leader, sub, pairs)


@pytest.mark.parametrize(
    "point", ["copy.paused", "copy.widened", "copy.first_table", "copy.written", "copy.copied"]
)
def test_a_copy_killed_mid_way_is_finished_by_tick(sites: dict[str, Site], point: str) -> None:
    """The group's other lists wait while a list is copied; a crashed copy must not keep them
    waiting: the next tick (the systemd timer) finishes the copy and resumes the stream."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    first, first_local = make_list(leader.node, "First"), make_list(sub.node, "First replica")
    add_dossiers(leader.node, first, 3, prefix="first-")
    attach(sub, leader, first, first_local)
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 6)
    assert sub.run(*attach_args(leader.leader_url, remote, local), fault=point).exit_code == KILLED
    rows = {row["local_list"]: row for row in sub.ok("status", "--json").json()}
    assert rows[first_local]["stream"] == f"paused: copying list {local}"
    add_dossiers(leader.node, first, 2, prefix="meanwhile-")
    tick = sub.run("tick", "--json")
    assert tick.exit_code == 0, tick.stderr
    _converged(leader, sub, [(first, first_local), (remote, local)])
    assert {row["state"] for row in sub.ok("status", "--json").json()} == {"ready"}


def test_a_copy_killed_before_it_settles_keeps_a_move_made_meanwhile(sites: dict[str, Site]) -> None:
    """While the copy of N starts, the Leader moves a dossier from N into the group's other
    list A; the copy (at a snapshot after the move) is killed before it settles A. The next
    tick copies again from later on: it must still settle A from the first attempt's
    position, since its stream applied the move (an UPDATE) when the dossier was nowhere
    here."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    (a, a_local), (n, n_local) = _stays_and_goes(leader, sub)
    sub.ok("detach", str(n_local), "--purge")
    y = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [n])[0]["id"]
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(
            result=sub.run(
                *attach_args(leader.leader_url, n, n_local), fault="copy.paused:pause,copy.written"
            )
        )
    )
    thread.start()
    wait_until(
        lambda: sub.node.execute("SELECT 1 FROM pgsync.sync_group WHERE copying_list_id = %s", [n_local]),
        "the copy of N pausing the stream",
    )
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [a, y])
    thread.join(120)
    assert outcome["result"].exit_code == KILLED, outcome["result"].stderr
    assert sub.run("tick").exit_code == 0
    _converged(leader, sub, [(a, a_local), (n, n_local)])
    assert y in {row["id"] for row in list_rows(sub.node, a_local)[0]}


def test_a_window_killed_open_is_closed_by_tick(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local, "--schedule", NIGHTLY)
    add_dossiers(leader.node, remote, 2, prefix="meanwhile-")
    assert sub.run("sync", str(local), fault="sync.window_open").exit_code == KILLED
    assert sub.node.execute("SELECT subenabled FROM pg_subscription")[0]["subenabled"] is True
    assert sub.run("tick").exit_code == 0
    assert sub.node.execute("SELECT subenabled FROM pg_subscription")[0]["subenabled"] is False
    _converged(leader, sub, [(remote, local)])


def _stays_and_goes(leader: Site, sub: Site) -> list[tuple[int, int]]:
    """Two attached lists of 3 dossiers in one group: one that stays, one to be detached."""
    pairs = []
    for name in ("Stays", "Goes"):
        remote, local = make_list(leader.node, name), make_list(sub.node, f"{name} replica")
        add_dossiers(leader.node, remote, 3, prefix=f"{name}-")
        attach(sub, leader, remote, local)
        pairs.append((remote, local))
    return pairs


def test_a_detach_killed_after_narrowing_is_finished_by_tick(sites: dict[str, Site]) -> None:
    """Left half-way, the list is no longer streamed yet still mapped: it would drift, and a
    later copy in its group would put it back in the filter with a gap. tick finishes the
    detach and keeps the list's rows; the group's other lists go on."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    (stays, stays_local), (goes, goes_local) = _stays_and_goes(leader, sub)
    assert sub.run("detach", str(goes_local), "--purge", fault="detach.narrowed").exit_code == KILLED
    kept = list_rows(sub.node, goes_local)
    assert (len(kept[0]), len(kept[1])) == (3, 6)
    add_dossiers(leader.node, goes, 2, prefix="after-")  # no longer streamed here
    third, third_local = make_list(leader.node, "Third"), make_list(sub.node, "Third replica")
    add_dossiers(leader.node, third, 2, prefix="third-")
    assert sub.run("tick").exit_code == 0
    assert not sub.node.execute("SELECT * FROM pgsync.link WHERE local_list_id = %s", [goes_local])
    assert list_rows(sub.node, goes_local) == kept
    attach(sub, leader, third, third_local)  # a copy in the group: the detached list stays out
    add_dossiers(leader.node, stays, 2, prefix="later-")
    _converged(leader, sub, [(stays, stays_local), (third, third_local)], len(kept[0]), len(kept[1]))


def _swap(leader: Site, first: int, second: int) -> tuple[Any, Any]:
    """One Leader transaction: a dossier of `first` into `second`, one of `second` into `first`."""
    x = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [first])[0]["id"]
    y = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [second])[0]["id"]
    with leader.node.connect() as conn, conn.transaction():
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [second, x])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [first, y])
    return x, y


def test_a_detach_after_a_killed_repair_catches_up_before_it_purges(sites: dict[str, Site]) -> None:
    """The killed repair left its group paused; the detach holds the group, so it ends that
    pause and its barrier goes through. Before, the barrier waited out its time, the purge
    then deleted a dossier whose move into the other list was still in the stream, and that
    move found nothing to move (found by the soak)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    (stays, stays_local), (goes, goes_local) = _stays_and_goes(leader, sub)
    assert sub.run("repair", str(goes_local), "--confirm", fault="repair.fixed").exit_code == KILLED
    _swap(leader, goes, stays)
    result = sub.run("detach", str(goes_local), "--purge", "--json", "--timeout", "20")
    assert result.exit_code == 0, result.stderr
    assert result.json()["kept_in_transit"] == 0
    assert list_rows(sub.node, goes_local) == ([], [])
    _converged(leader, sub, [(stays, stays_local)])


def test_a_detach_whose_stream_is_stuck_keeps_the_moves_on_their_way(sites: dict[str, Site]) -> None:
    """The stream stops at a swap between the two lists (a lock holds its first row) and the
    detach goes on without its barrier. The dossier moving out of the detached list is kept
    by the purge, so its move still finds it; the one moving into the detached list leaves
    the other list when its move arrives."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    (stays, stays_local), (goes, goes_local) = _stays_and_goes(leader, sub)
    x = leader.node.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [goes])[0]["id"]
    with sub.node.connect() as blocker, blocker.transaction():
        blocker.execute("SELECT 1 FROM dossier WHERE id = %s FOR UPDATE", [x])
        assert _swap(leader, goes, stays)[0] == x
        wait_until(
            lambda: sub.node.execute(
                "SELECT 1 FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%%' "
                "AND wait_event_type = 'Lock'"
            ),
            "the stream waiting on the locked row",
        )
        result = sub.run("detach", str(goes_local), "--purge", "--json", "--timeout", "2", timeout_s=60)
        assert result.exit_code == 0, result.stderr
        assert result.json()["kept_in_transit"] == 1
    _converged(leader, sub, [(stays, stays_local)])
    assert list_rows(sub.node, goes_local) == ([], [])


@pytest.mark.parametrize("point", ["detach.narrowed", "detach.group_dropped"])
def test_detach_killed_then_detach_again(sites: dict[str, Site], point: str) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    (stays, stays_local), (goes, goes_local) = _stays_and_goes(leader, sub)
    if point == "detach.group_dropped":  # the last list of its group
        sub.ok("detach", str(stays_local))
    assert sub.run("detach", str(goes_local), fault=point).exit_code == KILLED
    again = sub.run("detach", str(goes_local), "--json")
    assert again.exit_code == 0, again.stderr
    assert not sub.node.execute("SELECT * FROM pgsync.link WHERE local_list_id = %s", [goes_local])
    assert len(list_rows(sub.node, goes_local)[0]) == 3  # kept, as detach promises
    if point == "detach.narrowed":
        add_dossiers(leader.node, goes, 1, prefix="after-")
        _converged(leader, sub, [(stays, stays_local)], kept_dossiers=3, kept_faces=6)
        assert leader.node.execute("SELECT lists FROM pgsync.group_registration")[0]["lists"] == [stays]
    else:
        # No replica left: both lists were detached and kept (3 dossiers and 6 faces each), and
        # that is all there is; no face is apart from its dossier.
        assert_converged(leader, sub, [], outside={"dossier": 6, "dossier_face": 12})
        assert not group_names(sub) and not sub.node.execute("SELECT * FROM pg_subscription")
        assert not leader.node.execute("SELECT * FROM pg_replication_slots")
        assert not leader.node.execute("SELECT * FROM pg_publication")
        assert not leader.node.execute("SELECT * FROM pgsync.group_registration")


def test_a_repair_killed_after_its_catch_up_is_not_taken_for_a_clone(sites: dict[str, Site]) -> None:
    """In a windowed group with another list, a repair first lets the stream catch up, which
    moves the slot past where the last window left it, then pauses the stream. Killed there,
    it leaves the stream stopped with the slot ahead: the next sync must not take that for
    someone else streaming from the slot (a clone) and heal the group (seen in the soak: heals
    with no clone anywhere)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    pairs = []
    for name in ("First", "Second"):
        remote, local = make_list(leader.node, name), make_list(sub.node, f"{name} replica")
        add_dossiers(leader.node, remote, 3, prefix=f"{name}-")
        attach(sub, leader, remote, local, "--schedule", NIGHTLY)
        pairs.append((remote, local))
    assert sub.run("repair", str(pairs[0][1]), "--confirm", fault="repair.paused").exit_code == KILLED
    _converged(leader, sub, pairs)
    assert sub.node.execute("SELECT note FROM pgsync.sync_run WHERE reason = 'heal'") == []

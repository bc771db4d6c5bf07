"""A windowed group's catch-up: a large backlog is repaired in place instead of replayed
(pgsync_dossier/backlog.py), and the lists end equal to the Leader's all the same."""

from __future__ import annotations

from pgsync_dossier import backlog, subscriber
from tests.harness import NIGHTLY, Site, add_dossiers, assert_converged, attach, make_list


def _ballast(leader: Site, megabytes: int) -> None:
    """WAL the group's slot retains but whose rows no list of the group has: a Leader busy with
    other tables (or other Subscribers' lists) while this window was closed."""
    leader.node.execute("CREATE TABLE IF NOT EXISTS ballast (filler text)")
    leader.node.execute(
        "INSERT INTO ballast SELECT repeat(md5(g::text), 32) FROM generate_series(1, %s) AS g",
        [megabytes * 1024 * 1024 // 1024],
    )


def _last_note(sub: Site) -> str | None:
    rows = sub.node.execute("SELECT note FROM pgsync.sync_run WHERE finished_at IS NOT NULL ORDER BY id DESC")
    return rows[0]["note"] if rows else None


def _confirmed(leader: Site) -> int:
    return int(
        leader.node.execute(
            "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint AS lsn FROM pg_replication_slots "
            "WHERE slot_name LIKE 'pgsync%%'"
        )[0]["lsn"]
    )


def test_a_large_backlog_is_repaired_in_place_and_the_moves_kept(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    first, second = make_list(leader.node, "first"), make_list(leader.node, "second")
    add_dossiers(leader.node, first, 12, faces_each=2)
    add_dossiers(leader.node, second, 6, faces_each=1)
    mine = {first: make_list(sub.node, "first replica"), second: make_list(sub.node, "second replica")}
    for remote, local in mine.items():
        attach(sub, leader, remote, local, "--schedule", NIGHTLY)
    before = _confirmed(leader)
    # While the window is closed: every kind of change, moves between the group's two lists
    # both ways among them, then more WAL than the bound allows for lists this small.
    add_dossiers(leader.node, first, 3, prefix="new-")
    with leader.node.connect() as conn:
        ids = [
            r["id"]
            for r in conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id", [first])
        ]
        conn.execute("UPDATE dossier SET comment = 'changed' WHERE id = ANY (%s)", [ids[:2]])
        conn.execute("DELETE FROM dossier WHERE id = %s", [ids[2]])
        originals = conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id", [second])
        over = originals.fetchone()["id"]
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = ANY (%s)", [second, ids[3:5]])
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [first, over])
        # Away and back: its faces end where they were, with the same content and a newer
        # row_version, which the repair must bring too (the apply orders moves by it).
        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [first, ids[3]])
    _ballast(leader, backlog.MIN_BACKLOG_BYTES // (1024 * 1024) + 8)

    result = sub.ok("sync", "--all", "--json").json()
    assert {row["status"] for row in result} == {"synced"}
    note = _last_note(sub)
    assert note is not None and "repaired in place instead of replayed" in note, note
    assert _confirmed(leader) > before + backlog.MIN_BACKLOG_BYTES  # the slot was moved on
    assert_converged(leader, sub, sorted(mine.items()))  # the oracle, then verify agreeing
    statuses = sub.ok("status", "--json").json()
    assert {row["state"] for row in statuses} == {"ready"}

    # The next window replays as usual: a small backlog is never weighed.
    add_dossiers(leader.node, second, 2, prefix="later-")
    sub.ok("sync", "--all")
    assert "repaired in place" not in (_last_note(sub) or "")
    assert_converged(leader, sub, sorted(mine.items()), verify=False)


def test_a_repair_the_sync_chose_is_not_cut_short_by_its_timeout(sites: dict[str, Site]) -> None:
    """The repair's length follows the data, not the waits `--timeout` bounds: were it cut
    short, its transaction would roll back and every later sync would start it again. Here it
    is held 3 s (the fault point's pause) in a sync whose `--timeout` is 3 s."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "held"), make_list(sub.node, "held replica")
    add_dossiers(leader.node, remote, 8, faces_each=2)
    attach(sub, leader, remote, local, "--schedule", NIGHTLY)
    with sub.node.connect() as conn:  # damage, and the repair it owes (as a lost slot leaves)
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE dossier SET comment = 'tampered' WHERE dossier_list_id = %s", [local])
        conn.execute("UPDATE pgsync.link SET state = 'repairing' WHERE local_list_id = %s", [local])
    held = sub.run("sync", "--all", "--timeout", "3", fault="repair.paused:pause")
    assert held.exit_code == 0, held.stderr
    assert_converged(leader, sub, [(remote, local)])


def test_the_lists_size_leaves_out_the_free_space_of_a_purged_list(sites: dict[str, Site]) -> None:
    """The backlog is weighed against the lists' size. A table keeps the pages of a list
    purged from it (VACUUM frees them for reuse, and gives back only empty pages at its end),
    so a size per row taken from the table's size counted them: lists of 700 MB read 1,869 MB
    after a purge of a million (bench/README.md), and the catch-up replayed where it should
    have repaired. The lists' size comes from their own rows."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    purged = make_list(sub.node, "purged")  # a local list, written before the replica
    add_dossiers(sub.node, purged, 600, faces_each=2, prefix="gone-")
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 60, faces_each=2)
    attach(sub, leader, remote, local)

    def measured() -> tuple[int, int]:
        """The product's estimate, and the lists' rows summed whole by the test."""
        with sub.node.connect() as conn:
            estimate = subscriber.lists_bytes(conn, [local])
            (row,) = conn.execute(
                "SELECT (SELECT sum(pg_column_size(d.*)) FROM dossier AS d WHERE dossier_list_id = %(l)s)"
                " + (SELECT sum(pg_column_size(f.*)) FROM dossier_face AS f WHERE dossier_list_id = %(l)s)"
                " AS bytes",
                {"l": local},
            )
        return estimate, int(row["bytes"])

    before, rows_bytes = measured()
    assert abs(before - rows_bytes) <= 0.05 * rows_bytes, (before, rows_bytes)
    sub.node.execute("DELETE FROM dossier_face WHERE dossier_list_id = %s", [purged])
    sub.node.execute("DELETE FROM dossier WHERE dossier_list_id = %s", [purged])
    sub.node.execute("VACUUM ANALYZE dossier, dossier_face")
    after, _same = measured()
    assert abs(after - before) <= 0.05 * before, (before, after)

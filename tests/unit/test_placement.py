"""A change of place is a pg_upgrade only when prepare-upgrade announced it and the database
kept its OID and relfilenodes under a new system identifier on a later major version;
a later WAL timeline on the same system and database is a promotion (one the operator
confirms, in another data directory); anything else is a copy. A Leader is cloned only on its own cluster."""

from __future__ import annotations

from pgsync_dossier.placement import leader_cloned, verdict

HERE = "7300000000000000001/16384/var/lib/postgresql/15/main"
MARK = f"{HERE}|15|16500"
UPGRADED = "7400000000000000002/16384/var/lib/postgresql/18/main"


def test_the_same_place_or_none_recorded_is_here() -> None:
    assert verdict(HERE, None, MARK, 1, 1) == "here"
    assert verdict(None, None, MARK, 1, 1) == "here"
    assert verdict(HERE, MARK, MARK, 1, 1) == "here"  # announced, not moved yet


def test_an_announced_upgrade_keeps_the_identity() -> None:
    assert verdict(HERE, MARK, f"{UPGRADED}|18|16500", 1, 1) == "moved_by_upgrade"


def test_an_unannounced_move_is_a_copy() -> None:
    assert verdict(HERE, None, f"{UPGRADED}|18|16500", 1, 1) == "copied"


def test_a_restore_is_a_copy_even_when_announced() -> None:
    # A new cluster whose first database got the same OID: the relfilenodes differ.
    assert verdict(HERE, MARK, f"{UPGRADED}|18|16999", 1, 1) == "copied"
    # ... or the same major version: no upgrade happened.
    assert verdict(HERE, MARK, f"{UPGRADED}|15|16500", 1, 1) == "copied"


def test_a_clone_on_the_same_cluster_is_a_copy_even_when_announced() -> None:
    clone = "7300000000000000001/16999/var/lib/postgresql/15/main"
    assert verdict(HERE, MARK, f"{clone}|15|16500", 1, 1) == "copied"
    assert leader_cloned(HERE, clone)


def test_a_physical_copy_is_a_copy_even_when_announced() -> None:
    # pg_basebackup elsewhere: the same system identifier and OID, another directory.
    assert verdict(HERE, MARK, "7300000000000000001/16384/srv/copy|15|16500", 1, 1) == "copied"


def test_a_later_timeline_on_the_same_system_and_database_is_a_promotion() -> None:
    # A standby promoted (on another host, in the same directory), or a point-in-time recovery.
    assert verdict(HERE, None, MARK, 1, 2) == "promoted"
    # In another directory it may also be a copy promoted while the original runs on: the
    # operator says which.
    assert verdict(HERE, None, "7300000000000000001/16384/srv/standby|15|16500", 1, 2) == "promoted_elsewhere"
    # Nothing recorded yet (a node from before timelines were recorded): no verdict on it.
    assert verdict(HERE, None, MARK, None, 2) == "here"
    # A file-level copy started as a primary stays on its timeline: still a copy.
    assert verdict(HERE, None, "7300000000000000001/16384/srv/copy|15|16500", 2, 2) == "copied"
    # Another system, or another database, on a later timeline: not this node's standby.
    assert verdict(HERE, None, f"{UPGRADED}|18|16500", 1, 2) == "copied"
    assert verdict(HERE, MARK, f"{UPGRADED}|18|16500", 3, 1) == "moved_by_upgrade"
    assert verdict(HERE, None, "7300000000000000001/16999/var/lib/postgresql/15/main|15|1", 1, 2) == "copied"


def test_a_promoted_standby_or_an_upgrade_is_the_same_leader() -> None:
    assert not leader_cloned(HERE, "7300000000000000001/16384/srv/standby")
    assert not leader_cloned(HERE, UPGRADED)
    assert not leader_cloned(None, HERE)

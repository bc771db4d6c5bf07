"""A change of place is a pg_upgrade only when prepare-upgrade announced it and the database
kept its OID under a new system identifier; anything else is a copy."""

from __future__ import annotations

from pgsync_dossier.placement import verdict

HERE = "7300000000000000001/16384/var/lib/postgresql/15/main"
UPGRADED = "7400000000000000002/16384/var/lib/postgresql/18/main"


def test_the_same_place_or_none_recorded_is_here() -> None:
    assert verdict(HERE, None, HERE) == "here"
    assert verdict(None, None, HERE) == "here"
    assert verdict(HERE, HERE, HERE) == "here"  # announced, not moved yet


def test_an_announced_upgrade_keeps_the_identity() -> None:
    assert verdict(HERE, HERE, UPGRADED) == "moved_by_upgrade"


def test_an_unannounced_move_is_a_copy() -> None:
    assert verdict(HERE, None, UPGRADED) == "copied"


def test_a_clone_on_the_same_cluster_is_a_copy_even_when_announced() -> None:
    # CREATE DATABASE ... TEMPLATE: same system identifier, another OID.
    assert verdict(HERE, HERE, "7300000000000000001/16999/var/lib/postgresql/15/main") == "copied"


def test_a_physical_copy_is_a_copy_even_when_announced() -> None:
    # pg_basebackup elsewhere: the same system identifier and OID, another directory.
    assert verdict(HERE, HERE, "7300000000000000001/16384/srv/copy") == "copied"

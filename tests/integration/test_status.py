"""status on both sides: the documented JSON keys and values that mean something."""

from __future__ import annotations

from typing import Any

from pgsync_dossier.status import SUBSCRIBER_FIELDS
from tests.harness import Site, add_dossiers, assert_converged, attach, make_list, oracle_verdict, wait_until
from tests.oracle import KINDS, Convergence


def _agrees_with_the_oracle(row: dict[str, Any], found: Convergence) -> None:
    """A row of `verify --json` says what the oracle found: the same verdict, the same
    differences by kind, the same number of rows on each side."""
    (compared,) = found.lists
    assert row["match"] is found.equal, (row, found.problems())
    assert {kind: row[kind] for kind in KINDS} == found.counts(), (row, found.problems())
    assert (row["dossiers"], row["faces"]) == (
        compared.replica_rows["dossier"],
        compared.replica_rows["dossier_face"],
    )
    assert (row["leader_dossiers"], row["leader_faces"]) == (
        compared.leader_rows["dossier"],
        compared.leader_rows["dossier_face"],
    )


def test_subscriber_and_leader_status(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 4)
    attach(sub, leader, remote, local)
    rows = sub.ok("status", "--json").json()
    assert len(rows) == 1
    row = rows[0]
    assert tuple(row) == SUBSCRIBER_FIELDS
    assert row["local_list"] == local and row["remote_list"] == remote
    assert row["state"] == "ready" and row["enabled"] is True and row["leader_available"] is True
    assert row["stream"] == "streaming" and row["group"].startswith("pgsync_")
    assert row["dossiers"] == row["leader_dossiers"] == 4 and row["faces"] == row["leader_faces"] == 8
    (compared,) = assert_converged(leader, sub, [(remote, local)], verify=False).lists  # as status says
    assert compared.replica_rows == compared.leader_rows == {"dossier": 4, "dossier_face": 8}
    assert row["wal_status"] == "reserved" and row["retained_wal_bytes"] >= 0
    assert isinstance(row["lag_bytes"], int) and row["lag_seconds"] == 0.0
    assert row["copy"] == "done" and row["last_sync_ok"] is True and row["last_error"] is None
    assert "@" not in row["leader_url"] or "****" in row["leader_url"]

    one = sub.ok("status", str(local), "--json").json()
    assert one == [dict(row, lag_bytes=one[0]["lag_bytes"], retained_wal_bytes=one[0]["retained_wal_bytes"])]
    table = sub.ok("status").stdout
    assert "LOCAL_LIST" in table.splitlines()[0] and "ready" in table
    missing = sub.cli("status", "999")
    assert missing.exit_code == 3 and "not a replica" in missing.stderr

    published = leader.ok("status", "--json").json()
    assert published[0]["list"] == remote and published[0]["dossiers"] == 4
    (link,) = published[0]["subscribers"]
    assert link["subscriber"] == "subscriber_a site" and link["group"] == row["group"]
    assert link["slot_exists"] is True and link["active"] is True and link["wal_status"] == "reserved"
    # What the stream costs the Leader to decode: its walsender runs on this host.
    assert isinstance(link["decoded_bytes"], int) and link["decoded_bytes"] > 0
    assert isinstance(link["walsender_cpu_seconds"], float) and link["walsender_cpu_seconds"] >= 0
    human = leader.ok("status")
    assert "SUBSCRIBER" in human.stdout
    (decoding,) = [line for line in human.stderr.splitlines() if line.startswith("decoding:")]
    assert "each of its 1 streams decodes all of it" in decoding, decoding
    assert leader.ok("setup", "--json").json()["decoding"].startswith("decoding: this database writes")


def test_status_on_a_fresh_subscriber_is_empty(sites: dict[str, Site]) -> None:
    assert sites["subscriber_b"].ok("status", "--json").json() == []
    assert sites["subscriber_b"].ok("status").stdout.strip() == "(none)"


def test_verify_finds_matching_and_diverged_replicas(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 5)
    attach(sub, leader, remote, local)
    add_dossiers(leader.node, remote, 2, prefix="late")  # in flight: verify syncs first
    (row,) = sub.ok("verify", "--json").json()
    assert row["match"] is True and row["dossiers"] == row["leader_dossiers"] == 7
    _agrees_with_the_oracle(row, oracle_verdict(leader, sub, [(remote, local)]))  # equal, after its barrier
    with sub.node.connect() as conn:  # a superuser bypassing the guard, as a broken restore would
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE dossier SET comment = 'tampered' WHERE name = 'd1'")
    result = sub.cli("verify", str(local), "--json")
    assert result.exit_code == 1 and result.json()[0]["match"] is False
    assert "differ" in result.stderr
    found = oracle_verdict(leader, sub, [(remote, local)])  # the oracle finds the one tampered row too
    assert found.counts() == {"missing": 0, "extra": 0, "changed": 1}, found.problems()
    _agrees_with_the_oracle(result.json()[0], found)


def test_a_row_behind_the_leaders_version_differs_and_is_repaired(sites: dict[str, Site]) -> None:
    """Same content, an older row_version: what a repair that compared content alone left of a
    face whose dossier moved away and back. The apply orders moves between groups by that
    version, so verify counts it as changed and a repair brings it."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 4, faces_each=2)
    attach(sub, leader, remote, local)
    with sub.node.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE dossier_face SET row_version = row_version - 1 WHERE id = "
            "(SELECT min(id::text)::uuid FROM dossier_face WHERE dossier_list_id = %s)",
            [local],
        )
    found = oracle_verdict(leader, sub, [(remote, local)])
    assert found.count("dossier_face", "changed") == 1, found.problems()
    result = sub.cli("verify", str(local), "--json")
    assert result.exit_code == 1
    _agrees_with_the_oracle(result.json()[0], found)
    sub.ok("repair", str(local), "--confirm")
    assert_converged(leader, sub, [(remote, local)])


def test_repair_copies_a_diverged_replica_afresh(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 6)
    attach(sub, leader, remote, local)
    with sub.node.connect() as conn:  # divergence, as a broken restore would leave it
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM dossier WHERE name = 'd2'")
        conn.execute("INSERT INTO dossier (dossier_list_id, name) VALUES (%s, 'stray')", [local])
    assert sub.cli("verify", str(local)).exit_code == 1
    diverged = sub.cli("verify", str(local), "--json")
    assert diverged.exit_code == 1
    # What verify reports is what the oracle finds: d2 missing, the stray extra.
    found = oracle_verdict(leader, sub, [(remote, local)])
    _agrees_with_the_oracle(diverged.json()[0], found)
    assert (found.count("dossier", "missing"), found.count("dossier", "extra")) == (1, 1), found.problems()
    assert sub.cli("repair", str(local)).exit_code == 2  # --confirm is required
    repaired = sub.ok("repair", str(local), "--confirm", "--json").json()
    assert repaired["dossiers"] == 6 and repaired["synced"] is True
    (row,) = sub.ok("verify", str(local), "--json").json()
    assert row["match"] is True
    _agrees_with_the_oracle(row, assert_converged(leader, sub, [(remote, local)]))
    assert len(leader.node.execute("SELECT * FROM pg_replication_slots WHERE slot_name LIKE 'pgsync%'")) == 1
    missing = sub.cli("repair", "999", "--confirm")
    assert missing.exit_code == 3 and "not a replica" in missing.stderr


def test_apply_conflicts_are_counted_where_postgresql_counts_them(
    sites: dict[str, Site], pg_version: int
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 2, faces_each=0)
    attach(sub, leader, remote, local)
    with sub.node.connect() as conn:  # a row gone here only, behind the guard's back
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM dossier WHERE name = 'd0'")
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET comment = 'changed' WHERE name = 'd0'")
    sub.ok("sync", str(local))
    (row,) = sub.ok("status", "--json").json()
    assert row["apply_errors"] == 0
    if pg_version >= 18:
        wait_until(
            lambda: sub.ok("status", "--json").json()[0]["apply_conflicts"] == 1,
            "the update_missing conflict",
        )
    else:
        assert row["apply_conflicts"] is None

"""A relay run as a primary with a physical standby, promoted after the standby fell behind.

A standby replays its primary's WAL asynchronously. When the relay's primary dies, the
changes it had applied from the Leader but the standby had not replayed are gone from the
promoted standby, and the Leader's slot will not send them again: it moved on as far as the
old primary confirmed. The promoted relay sees the new timeline; in another data directory it
asks the operator to confirm (`setup --failover`: a copy would take `setup`), then `tick`
repairs its replicas in place. `tick` downstream finds its slot missing on the new primary
(physical standbys keep no logical slots without slot synchronization) and heals the same
way. Each is judged by the oracle against the Leader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from pgsync_dossier.clusters import LocalCluster
from tests.harness import (
    TEMPLATE_DB,
    Node,
    Site,
    _start_cluster,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    group_names,
    make_list,
    replayed,
    start_standby,
    wait_until,
    write_config,
)

NOTHING_OUTSIDE = {"dossier": 0, "dossier_face": 0}


@dataclass
class RelayPair:
    primary: LocalCluster
    site: Site  # the relay's config, pointing at the primary
    root: Path
    bindir: Path
    config_dir: Path
    standby: LocalCluster | None = None

    def start_standby(self) -> str:
        """The relay's standby, made once the relay is enrolled on its Leader (its password
        file, outside the WAL, comes with the base backup); returns the URL downstream
        Subscribers are given: both hosts, read-write wanted."""
        self.standby = start_standby(self.primary, self.root / "relay-b", self.bindir, slot="relay_b")
        return (
            f"postgresql://{self.primary.host}:{self.primary.port},{self.standby.host}:{self.standby.port}/"
            f"{quote(self.site.node.dbname, safe='')}?target_session_attrs=read-write"
        )

    def promoted(self) -> Site:
        """The relay's config after the failover, as its DBA points it at the new primary."""
        assert self.standby is not None
        node = Node("relay", self.standby, self.site.node.dbname)
        return Site(node, write_config(self.config_dir / "relay-promoted.yaml", node, "relay"))


@pytest.fixture
def relay_pair(
    nodes: dict[str, Node], pg_bindir: Path, cluster_root: Path, tmp_path: Path
) -> Iterator[RelayPair]:
    """Made after `nodes` and so removed before them: the relay's stream holds a slot on the
    Leader, which their reset drops."""
    primary = _start_cluster(cluster_root, "relay-a", pg_bindir)
    pair: RelayPair | None = None
    try:
        node = Node("relay", primary, "Relay dossiers")
        node.janitor(node.dbname, template=TEMPLATE_DB).init()
        site = Site(node, write_config(tmp_path / "relay.yaml", node, "relay"))
        site.ok("setup")
        pair = RelayPair(primary, site, cluster_root, pg_bindir, tmp_path)
        yield pair
    finally:
        primary.remove()
        if pair is not None and pair.standby is not None:
            pair.standby.remove()


def _cut_off(standby: LocalCluster) -> None:
    """The standby stops receiving WAL, as when its network to the primary fails."""
    with psycopg.connect(standby.conninfo(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
        conn.execute("SELECT pg_reload_conf()")
    with psycopg.connect(standby.conninfo(), autocommit=True) as conn:
        wait_until(
            lambda: not conn.execute("SELECT 1 FROM pg_stat_wal_receiver").fetchall(),
            "the standby's WAL receiver to stop",
        )


def _confirmed(leader: Site, slot: str) -> bool:
    """The Leader's slot has confirmed everything the Leader wrote so far."""
    rows = leader.node.execute(
        "SELECT confirmed_flush_lsn >= pg_current_wal_lsn() AS done FROM pg_replication_slots "
        "WHERE slot_name = %s",
        [slot],
    )
    return bool(rows and rows[0]["done"])


def _states(site: Site) -> list[tuple[str, bool]]:
    return [(row["state"], row["repair_owed"]) for row in site.node.execute("SELECT * FROM pgsync.link")]


@pytest.mark.parametrize("paused", [False, True], ids=["streaming", "paused-for-a-face-model"])
def test_a_relay_promoted_from_a_lagging_standby_heals_both_hops(
    paused: bool, relay_pair: RelayPair, sites: dict[str, Site], tmp_path: Path
) -> None:
    """`paused`: the Leader's face model changed before the failover, so the relay's list is
    paused: it stays paused (its stream closed) and owes the repair, done once the models
    agree again."""
    leader, downstream, pair = sites["leader"], sites["subscriber_b"], relay_pair
    relay = pair.site
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 10, faces_each=1, prefix="before-")
    relay.node.execute("INSERT INTO dossier_list (id, name) VALUES (%s, 'Wanted')", [wanted])
    attach(relay, leader, wanted, wanted)
    url = pair.start_standby()
    assert pair.standby is not None
    local = make_list(downstream.node, "Here")
    downstream.ok(*attach_args(url, wanted, local))
    assert_converged(leader, downstream, [(wanted, local)])
    wait_until(lambda: replayed(pair.primary, pair.standby), "the standby to replay the relay's writes", 60)

    # The standby falls behind; the relay applies more and confirms it to the Leader.
    _cut_off(pair.standby)
    unseen = add_dossiers(leader.node, wanted, 5, faces_each=1, prefix="unseen-")
    leader.node.execute("UPDATE dossier SET name = 'renamed' WHERE name = 'before-0'")
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    assert_converged(leader, downstream, [(wanted, local)])
    (relay_group,) = group_names(relay)
    wait_until(lambda: _confirmed(leader, relay_group), "the Leader's slot to confirm the relay's apply")
    retrained = Site(
        leader.node, write_config(tmp_path / "retrained.yaml", leader.node, "leader", face_model="v3")
    )
    if paused:
        retrained.ok("setup")
        assert relay.cli("sync", "--all").exit_code != 0
        assert _states(relay) == [("paused", False)]

    pair.primary.stop(mode="immediate")
    pair.standby._run("pg_ctl", "promote", "--pgdata", str(pair.standby.datadir), "--wait")
    promoted = pair.promoted()
    missing = promoted.node.execute("SELECT count(*) AS n FROM dossier WHERE id = ANY(%s)", [unseen])
    assert missing == [{"n": 0}], "the standby was not behind: the test proves nothing"
    add_dossiers(leader.node, wanted, 5, faces_each=1, prefix="after-")

    # In another data directory the operator says whether it replaces the relay or copies it.
    refused = promoted.cli("tick")
    assert refused.exit_code == 3 and "setup --failover" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert downstream.cli("setup", "--failover").exit_code == 3  # no promotion there: nothing to confirm
    promoted.ok("setup", "--failover")
    if paused:
        promoted.cli("tick")
        assert _states(promoted) == [("paused", True)]  # still paused, owing the repair
        assert promoted.node.execute("SELECT subenabled FROM pg_subscription") == [{"subenabled": False}]
        leader.ok("setup")  # the model back
    promoted.ok("tick")
    assert_converged(leader, promoted, [(wanted, wanted)], outside=NOTHING_OUTSIDE)
    assert _states(promoted) == [("ready", False)]
    (heal,) = promoted.node.execute("SELECT note FROM pgsync.sync_run WHERE reason = 'heal'")
    assert "new timeline" in heal["note"], heal
    downstream.ok("tick")
    found = assert_converged(leader, downstream, [(wanted, local)], outside=NOTHING_OUTSIDE)
    for compared in found.lists:  # 10 + 5 + 5: none lost, none twice
        assert compared.replica_rows == compared.leader_rows == {"dossier": 20, "dossier_face": 20}

    # Healed once: the next commands on either hop have nothing more to heal.
    promoted.ok("setup", "--json")
    promoted.ok("tick")
    downstream.ok("tick")
    assert len(promoted.node.execute("SELECT 1 FROM pgsync.sync_run WHERE reason = 'heal'")) == 1
    downstream_heals = downstream.node.execute("SELECT note FROM pgsync.sync_run WHERE reason = 'heal'")
    assert len(downstream_heals) == 1 and "no slot" in downstream_heals[0]["note"], downstream_heals

"""A Leader run as a primary with a physical standby: the replicas follow a failover.

The test builds the pair as a DBA would (a physical slot, `pg_basebackup`, a standby that
synchronizes slots and sends feedback, `synchronized_standby_slots` on the primary), attaches
two lists on a Subscriber through a multi-host Leader URL, keeps writing, then either kills
the primary (`-m immediate`) or stops it cleanly, promotes the standby and writes there.
On PostgreSQL 17+ the group's failover slot survives: `sync --all` succeeds, no list is copied
or repaired again. Before 17 the slot is gone on the new primary: the sync recreates it and
repairs the lists in place. Either way `verify` is equal and no row is lost or duplicated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from pgsync_dossier.clusters import LocalCluster
from tests.harness import (
    TEMPLATE_DB,
    Node,
    Site,
    _start_cluster,
    add_dossiers,
    assert_converged,
    make_list,
    replayed,
    start_standby,
    wait_until,
    write_config,
)

STANDBY_SLOT = "hq_b"
FAILOVER_SLOTS = 17


@dataclass
class LeaderPair:
    primary: LocalCluster
    standby: LocalCluster
    site: Site  # the Leader's config, pointing at the primary
    url: str  # what Subscribers are given: both hosts, read-write wanted

    def node(self, cluster: LocalCluster) -> Node:
        return Node("hq", cluster, self.site.node.dbname)


@pytest.fixture
def leader_pair(
    pg_bindir: Path, pg_version: int, cluster_root: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LeaderPair]:
    """A primary and its standby; `request.param` names a misconfiguration ("no-slot": the
    standby streams without a slot; "no-feedback": nor feedback nor slot synchronization)."""
    flaw = getattr(request, "param", None)
    suffix = request.node.name.replace("[", "-").rstrip("]")
    primary = _start_cluster(cluster_root, f"hq-a-{suffix}", pg_bindir)
    standby: LocalCluster | None = None
    try:
        node = Node("hq", primary, "HQ dossiers")
        node.janitor(node.dbname, template=TEMPLATE_DB).init()
        site = Site(node, write_config(tmp_path / "hq.yaml", node, "leader"))
        assert site.ok("setup", "--json").json()["warnings"] == []  # no standby yet: nothing new
        settings = {}
        if flaw is None:
            settings["hot_standby_feedback"] = "on"
            if pg_version >= FAILOVER_SLOTS:
                settings["sync_replication_slots"] = "on"
        standby = start_standby(
            primary, cluster_root / f"hq-b-{suffix}", pg_bindir,
            slot=None if flaw == "no-slot" else STANDBY_SLOT, **settings,
        )  # fmt: skip
        url = (
            f"postgresql://{primary.host}:{primary.port},{standby.host}:{standby.port}/"
            f"{quote(node.dbname, safe='')}?target_session_attrs=read-write"
        )
        yield LeaderPair(primary, standby, site, url)
    finally:
        for cluster in (primary, standby):
            if cluster is not None:
                cluster.remove()


def _warnings(pair: LeaderPair) -> list[str]:
    result = pair.site.ok("setup", "--json")
    warnings: list[str] = result.json()["warnings"]
    return warnings


def _replayed(pair: LeaderPair) -> bool:
    return replayed(pair.primary, pair.standby)


def _synced_slots(pair: LeaderPair) -> list[str]:
    with psycopg.connect(pair.standby.conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE synced AND NOT temporary "
            "AND invalidation_reason IS NULL"
        ).fetchall()
    return [row[0] for row in rows]


def _slot_active(pair: LeaderPair, name: str) -> bool:
    with psycopg.connect(pair.primary.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchone()
    return bool(row and row[0])


def _links(sub: Site) -> list[dict[str, Any]]:
    return sub.node.execute(
        "SELECT local_list_id, state, copy_expected, updated_at FROM pgsync.link ORDER BY local_list_id"
    )


@pytest.mark.parametrize("how", ["failover", "switchover"])
def test_replicas_follow_the_leader_to_its_promoted_standby(
    how: str, leader_pair: LeaderPair, sites: dict[str, Site], pg_version: int
) -> None:
    pair, sub = leader_pair, sites["subscriber_a"]
    hq = pair.node(pair.primary)
    pairs = []
    for n in range(2):
        remote, local = make_list(hq, f"HQ {n}"), make_list(sub.node, f"replica {n}")
        add_dossiers(hq, remote, 10, faces_each=1, prefix=f"before-{n}-")
        sub.ok("attach", "--remote-list", str(remote), "--remote-url", pair.url, "--local-list", str(local))
        pairs.append((remote, local))
    if pg_version >= FAILOVER_SLOTS:
        # A group made before failover slots (or before an upgrade to 17): sync makes its slot one.
        name = sub.node.execute("SELECT name FROM pgsync.sync_group")[0]["name"]
        ident = sql.Identifier(name)
        sub.node.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        wait_until(lambda: not _slot_active(pair, name), "the stream to let go of its slot")
        sub.node.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (failover = false)").format(ident))
        sub.node.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
        sub.ok("sync", "--all")
        assert sub.node.execute("SELECT subfailover, subenabled FROM pg_subscription") == [
            {"subfailover": True, "subenabled": True}
        ]
    (status_row, *_) = sub.ok("status", "--json").json()
    assert status_row["leader_host"] == f"{pair.primary.host}:{pair.primary.port}"
    if pg_version >= FAILOVER_SLOTS:
        # The DBA's last step: no Subscriber may get ahead of the standby.
        assert any("synchronized_standby_slots" in w for w in _warnings(pair))
        with psycopg.connect(pair.primary.conninfo(), autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET synchronized_standby_slots = '{STANDBY_SLOT}'")
            conn.execute("SELECT pg_reload_conf()")
        wait_until(lambda: _warnings(pair) == [], "a standby that needs nothing more", 60)
    for remote, _local in pairs:
        add_dossiers(hq, remote, 5, faces_each=1, prefix="while-streaming-")
    sub.ok("sync", "--all")
    if pg_version >= FAILOVER_SLOTS:
        group = sub.node.execute("SELECT name FROM pgsync.sync_group")[0]["name"]
        wait_until(lambda: group in _synced_slots(pair), "the group's slot to be synchronized", 90)
    else:
        assert any("keeps no logical slot across a failover" in w for w in _warnings(pair))
    before = _links(sub)

    wait_until(lambda: _replayed(pair), "the standby to replay the primary's writes", 60)
    pair.primary.stop(mode="immediate" if how == "failover" else "fast")
    pair.standby._run("pg_ctl", "promote", "--pgdata", str(pair.standby.datadir), "--wait")
    new_hq = pair.node(pair.standby)
    for remote, _local in pairs:
        add_dossiers(new_hq, remote, 5, faces_each=1, prefix="after-promotion-")

    result = sub.run("sync", "--all")
    assert result.exit_code == 0, result.stderr
    found = assert_converged(new_hq, sub, pairs, outside={"dossier": 0, "dossier_face": 0})
    for compared in found.lists:  # 10 + 5 + 5: none lost, none twice
        assert compared.replica_rows == compared.leader_rows == {"dossier": 20, "dossier_face": 20}
    status_rows = sub.ok("status", "--json").json()
    assert {row["leader_host"] for row in status_rows} == {f"{pair.standby.host}:{pair.standby.port}"}
    heals = sub.node.execute("SELECT ok, note FROM pgsync.sync_run WHERE reason = 'heal'")
    if pg_version >= FAILOVER_SLOTS:
        assert heals == [] and _links(sub) == before  # the stream went on: nothing copied or repaired
    else:
        assert [h["ok"] for h in heals] == [True], heals  # the slot recreated, the lists repaired in place
        assert all(row["last_heal"] for row in status_rows)


@pytest.mark.parametrize(
    ("leader_pair", "missing"),
    [
        ("no-slot", ["streams without a replication slot", "sync_replication_slots = on"]),
        (
            "no-feedback",
            ["hot_standby_feedback = on", "synchronized_standby_slots", "sync_replication_slots = on"],
        ),
    ],
    indirect=["leader_pair"],
)
def test_the_leader_names_each_setting_its_standby_lacks(
    leader_pair: LeaderPair, missing: list[str], pg_version: int
) -> None:
    if pg_version < FAILOVER_SLOTS:
        missing = ["keeps no logical slot across a failover"]
    warnings = wait_until(lambda: _warnings(leader_pair), "the standby to be seen")
    assert len(warnings) == len(missing), warnings
    for words, warning in zip(missing, warnings, strict=True):
        assert words in warning, warnings
    status = leader_pair.site.cli("status")
    assert status.exit_code == 0
    assert status.stderr.count("warning: ") == len(missing), status.stderr

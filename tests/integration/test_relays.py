"""A relay: a Subscriber whose replicas further Subscribers attach as they attach a Leader's
lists (issue #28). Leader -> relay (subscriber_a) -> downstream (subscriber_b), each judged by
the oracle against the Leader itself."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from pgsync_dossier.clusters import LocalCluster
from pgsync_dossier.fallback import FALLBACK_AFTER_ENV
from tests.harness import (
    FACE_MODEL,
    TEMPLATE_DB,
    Node,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    drop_slots,
    drop_subscriptions,
    make_api_token,
    make_list,
    serving,
    wait_until,
    write_config,
)

NOTHING_OUTSIDE = {"dossier": 0, "dossier_face": 0}


@pytest.fixture
def chain(nodes: dict[str, Node], tmp_path: Path) -> tuple[Site, Site, Site]:
    """The three nodes set up as Leader, relay and downstream Subscriber."""
    made = []
    for name, role in (("leader", "leader"), ("subscriber_a", "relay"), ("subscriber_b", "subscriber")):
        site = Site(nodes[name], write_config(tmp_path / f"{name}.yaml", nodes[name], role))
        site.ok("setup")
        made.append(site)
    return made[0], made[1], made[2]


def _list_with_id(site: Site, list_id: int, name: str) -> None:
    """What a relay's DBA does: a local list under the Leader list's id."""
    site.node.execute("INSERT INTO dossier_list (id, name) VALUES (%s, %s)", [list_id, name])


def _relayed_list(chain: tuple[Site, Site, Site], dossiers: int, *downstream_attach: str) -> tuple[int, int]:
    """A Leader list of `dossiers`, attached on the relay, and the relay's replica attached
    downstream (with these extra arguments): (the list's id, the downstream replica's)."""
    _leader, relay, downstream = chain
    wanted = _on_the_relay(chain, dossiers)
    local = make_list(downstream.node, "Here")
    attach(downstream, relay, wanted, local, *downstream_attach)
    return wanted, local


def _on_the_relay(chain: tuple[Site, Site, Site], dossiers: int) -> int:
    """A Leader list of `dossiers`, replicated on the relay under its id."""
    leader, relay, _downstream = chain
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, dossiers)
    _list_with_id(relay, wanted, "Wanted")
    attach(relay, leader, wanted, wanted)
    return wanted


def _move(leader: Site, dossier: object, to_list: int) -> None:
    leader.node.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [to_list, dossier])


def test_a_replica_of_a_relays_replica_follows_the_leader(chain: tuple[Site, Site, Site]) -> None:
    leader, relay, downstream = chain
    wanted, second, other = (make_list(leader.node, name) for name in ("Wanted", "Second", "Other"))
    add_dossiers(leader.node, wanted, 5)
    add_dossiers(leader.node, second, 3, prefix="s")
    (stranger,) = add_dossiers(leader.node, other, 1, prefix="o")
    for list_id, name in ((wanted, "Wanted"), (second, "Second")):
        _list_with_id(relay, list_id, name)
        attach(relay, leader, list_id, list_id)
    make_list(downstream.node, "Local")  # the downstream numbers its lists its own way
    mine = {
        wanted: make_list(downstream.node, "Wanted here"),
        second: make_list(downstream.node, "Second here"),
    }
    for remote, local in mine.items():
        attach(downstream, relay, remote, local)
    pairs = sorted(mine.items())
    assert_converged(leader, downstream, pairs, verify=True)
    # A relay's stream flushes at each commit: its walsenders send on only flushed WAL.
    synchronous = "SELECT subsynccommit AS s FROM pg_subscription"
    assert [row["s"] for row in relay.node.execute(synchronous)] == ["local"]
    assert [row["s"] for row in downstream.node.execute(synchronous)] == ["off"]

    staying, mover, swapped, doomed = add_dossiers(leader.node, wanted, 4, prefix="n")
    with leader.node.connect() as conn:
        conn.execute("UPDATE dossier SET name = 'renamed' WHERE id = %s", [staying])
        conn.execute("UPDATE dossier_face SET model = 'other model' WHERE dossier_id = %s", [staying])
        conn.execute("DELETE FROM dossier WHERE id = %s", [doomed])
        with conn.transaction():  # a swap between two replicated lists
            conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [second, swapped])
            conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE name = 's0'", [wanted])
    _move(leader, mover, other)
    _move(leader, stranger, wanted)
    _move(leader, mover, wanted)
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    assert_converged(leader, relay, [(wanted, wanted), (second, second)], outside=NOTHING_OUTSIDE)
    assert_converged(leader, downstream, pairs, outside=NOTHING_OUTSIDE)

    # A downstream replica tampered with (in replica mode, past the read-only guard) is
    # repaired in place from the relay.
    with downstream.node.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE dossier SET name = 'tampered' WHERE dossier_list_id = %s", [mine[wanted]])
        conn.execute(
            "DELETE FROM dossier_face WHERE dossier_list_id = %s AND model = 'other model'", [mine[wanted]]
        )
    assert downstream.cli("verify", "--json").exit_code != 0
    downstream.ok("repair", str(mine[wanted]), "--confirm")
    assert_converged(leader, downstream, pairs, outside=NOTHING_OUTSIDE)

    # The relay keeps a list its downstream replicates: detached there it would become the
    # relay's own, streamed on (a purge would empty the downstream replica).
    refused = relay.cli("detach", str(second), "--purge")
    assert refused.exit_code == 3 and "replicated from this relay by subscriber_b site" in refused.stderr
    assert (
        relay.node.execute("SELECT state FROM pgsync.link WHERE local_list_id = %s", [second])[0]["state"]
        == "ready"
    )

    # Detached downstream, the list keeps its rows and takes no more of the Leader's changes.
    downstream.ok("detach", str(mine[second]))
    add_dossiers(leader.node, second, 2, prefix="late")
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    assert_converged(leader, relay, [(wanted, wanted), (second, second)], outside=NOTHING_OUTSIDE)
    assert_converged(leader, downstream, [(wanted, mine[wanted])])
    held = downstream.node.execute(
        "SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s", [mine[second]]
    )
    assert held[0]["n"] == 3  # as it was at the detach: s1, s2 and the swapped dossier

    # The timer's commands and status run on each hop; the relay shows its published side too.
    for site in (relay, downstream):
        site.ok("tick")
        shown = site.ok("status", "--json").json()
        assert shown, f"status of {site.node.name} shows its replicas"
    published = relay.ok("status", "--published", "--json").json()
    assert [row["list"] for row in published] == [wanted]  # the downstream detached `second`
    (stream,) = published[0]["subscribers"]
    assert stream["subscriber"] == "subscriber_b site" and stream["active"] is True
    assert downstream.cli("status", "--published").exit_code == 2


def test_what_a_relay_refuses(chain: tuple[Site, Site, Site], tmp_path: Path) -> None:
    leader, relay, downstream = chain
    make_list(leader.node, "Unused")
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 2)
    elsewhere = make_list(relay.node, "Own list")
    assert elsewhere != wanted

    # A fallback is a PostgreSQL URL without a password (the token logs in); the password is
    # not echoed.
    target = make_list(downstream.node, "Here")
    with_password = "postgresql://someone:s3cret-pw@leader.example.org/dossiers"
    refused = downstream.cli(*attach_args(leader.leader_url, wanted, target), "--fallback-url", with_password)
    assert refused.exit_code == 2 and "without a password" in refused.stderr, refused.stderr
    assert "s3cret-pw" not in refused.stderr + refused.stdout
    assert not downstream.node.execute("SELECT 1 FROM pgsync.sync_group")

    # A relay keeps the Leader's list ids.
    refused = relay.cli(*attach_args(leader.leader_url, wanted, elsewhere))
    assert refused.exit_code != 0
    assert "keeps its Leader's list ids" in refused.stderr and "Traceback" not in refused.stderr
    assert not relay.node.execute("SELECT 1 FROM pgsync.sync_group")

    # A relay serves only the lists it replicates: not one of its own.
    refused = downstream.cli(*attach_args(relay.leader_url, elsewhere, target))
    assert refused.exit_code != 0
    assert "replicates no list" in refused.stderr, refused.stderr
    assert not downstream.node.execute("SELECT 1 FROM pgsync.sync_group")
    assert not relay.node.execute("SELECT 1 FROM pgsync.group_registration")

    # A downstream with another face model is refused by the relay's model, which is the Leader's.
    _list_with_id(relay, wanted, "Wanted")
    attach(relay, leader, wanted, wanted)
    other_model = write_config(
        tmp_path / "other-model.yaml", downstream.node, "subscriber", face_model="other"
    )
    refused = Site(downstream.node, other_model).cli(*attach_args(relay.leader_url, wanted, target))
    assert refused.exit_code != 0 and "face models differ" in refused.stderr, refused.stderr
    assert FACE_MODEL in refused.stderr
    # So is one with another sync token than the relay's, which is the Leader's.
    other_token = write_config(
        tmp_path / "other-token.yaml", downstream.node, "subscriber", sync_token="W" * 40
    )
    refused = Site(downstream.node, other_token).cli(*attach_args(relay.leader_url, wanted, target))
    assert refused.exit_code != 0 and "sync token" in refused.stderr, refused.stderr
    assert "W" * 40 not in refused.stderr + refused.stdout
    assert not downstream.node.execute("SELECT 1 FROM pgsync.sync_group")

    # A Subscriber holding a replica under another id cannot become a relay.
    attach(downstream, leader, wanted, target)
    as_relay = write_config(tmp_path / "as-relay.yaml", downstream.node, "relay")
    refused = Site(downstream.node, as_relay).cli("setup")
    assert refused.exit_code != 0
    assert f"{target} (Leader list {wanted})" in refused.stderr, refused.stderr
    assert downstream.node.execute("SELECT role FROM pgsync.node")[0]["role"] == "subscriber"

    # One replica per Leader list, whichever upstream brings it: not a second one by the relay.
    again = make_list(downstream.node, "Again")
    refused = downstream.cli(*attach_args(relay.leader_url, wanted, again))
    assert refused.exit_code == 3 and f"already replicated into local list {target}" in refused.stderr
    assert downstream.node.execute("SELECT count(*) AS n FROM pgsync.link")[0]["n"] == 1


def test_a_subscriber_with_the_leaders_list_ids_becomes_a_relay(
    chain: tuple[Site, Site, Site], tmp_path: Path
) -> None:
    """As docs/relays.md says: the same database, set up again with `role: relay`. Another
    relay then attaches its replica: Leader -> the former Subscriber -> relay."""
    leader, relay, subscriber = chain
    wanted = make_list(leader.node, "Wanted")
    add_dossiers(leader.node, wanted, 4)
    _list_with_id(subscriber, wanted, "Wanted")
    attach(subscriber, leader, wanted, wanted)
    identity = "SELECT relreplident AS r FROM pg_class WHERE oid = 'dossier'::regclass"
    assert subscriber.node.execute(identity) == [{"r": "d"}]  # a Subscriber's: the primary key

    became = Site(subscriber.node, write_config(tmp_path / "became-relay.yaml", subscriber.node, "relay"))
    became.ok("setup")
    assert subscriber.node.execute("SELECT role FROM pgsync.node") == [{"role": "relay"}]
    assert subscriber.node.execute(identity) == [{"r": "i"}]  # the Leader's (id, list)
    synchronous = subscriber.node.execute("SELECT subsynccommit AS s FROM pg_subscription")
    assert [row["s"] for row in synchronous] == ["local"]
    _list_with_id(relay, wanted, "Wanted")
    attach(relay, became, wanted, wanted)
    staying, _ = add_dossiers(leader.node, wanted, 2, prefix="n")
    leader.node.execute("UPDATE dossier SET name = 'renamed' WHERE id = %s", [staying])
    became.ok("sync", "--all")
    relay.ok("sync", "--all")
    assert_converged(leader, subscriber, [(wanted, wanted)], outside=NOTHING_OUTSIDE)
    assert_converged(leader, relay, [(wanted, wanted)], outside=NOTHING_OUTSIDE)
    (published,) = became.ok("status", "--published", "--json").json()
    assert [stream["subscriber"] for stream in published["subscribers"]] == ["subscriber_a site"]


#: The heartbeat a relay applied for its own group (not the ones it writes for downstream groups).
_OWN_HEARTBEAT = (
    "SELECT beat_at AS t FROM pgsync.heartbeat WHERE group_name IN (SELECT name FROM pgsync.sync_group)"
)


def _reached(site: Site, local: int) -> datetime | None:
    """`status --json`'s leader_time_reached of a replica."""
    (row,) = [row for row in site.ok("status", "--json").json() if row["local_list"] == local]
    return datetime.fromisoformat(row["leader_time_reached"]) if row["leader_time_reached"] else None


def _leader_clock(leader: Site) -> datetime:
    value: datetime = leader.node.execute("SELECT clock_timestamp() AS t")[0]["t"]
    return value


def test_downstream_status_shows_the_leader_time_reached_through_the_relay(
    chain: tuple[Site, Site, Site],
) -> None:
    leader, relay, downstream = chain
    wanted, local = _relayed_list(chain, 2)

    add_dossiers(leader.node, wanted, 1, prefix="new")
    changed_at = _leader_clock(leader)
    downstream.ok("sync", "--all")
    reached = _reached(downstream, local)
    # Equal to the relay now, which has not proven itself past the change: the time says so.
    assert reached is not None and reached < changed_at
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    reached = _reached(downstream, local)
    assert reached is not None and reached >= changed_at
    assert_converged(leader, downstream, [(wanted, local)])

    # A continuous relay's tick moves its Leader time on without a sync.
    ticked_at = _leader_clock(leader)
    relay.ok("tick")
    wait_until(
        lambda: relay.node.execute(_OWN_HEARTBEAT)[0]["t"] >= ticked_at,
        "the relay's tick to bring it a newer heartbeat",
    )
    downstream.ok("sync", "--all")
    reached = _reached(downstream, local)
    assert reached is not None and reached >= ticked_at


def test_a_relay_restarted_while_the_leader_writes_loses_nothing(chain: tuple[Site, Site, Site]) -> None:
    """The relay's server goes down (its downstream stream breaks, its own stream stops) while
    the Leader keeps writing, and comes back: both hops resume where they were."""
    leader, relay, downstream = chain
    wanted, local = _relayed_list(chain, 3)
    relay.node.cluster.stop(mode="immediate")
    try:
        moved, _ = add_dossiers(leader.node, wanted, 2, prefix="meanwhile")
        leader.node.execute("UPDATE dossier SET name = 'renamed meanwhile' WHERE id = %s", [moved])
        assert downstream.cli("sync", "--all").exit_code != 0  # its relay is down
    finally:
        relay.node.cluster.start()
    add_dossiers(leader.node, wanted, 1, prefix="after")
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    assert_converged(leader, relay, [(wanted, wanted)], outside=NOTHING_OUTSIDE)
    assert_converged(leader, downstream, [(wanted, local)])


def test_a_lost_relay_is_replaced_by_the_fallback_at_tick(chain: tuple[Site, Site, Site]) -> None:
    """The downstream names the Leader as its fallback; its relay dies: `tick` moves the stream
    to the Leader and repairs the replica in place there, and drops the old slot on the relay
    once it is back."""
    leader, relay, downstream = chain
    wanted, local = _relayed_list(chain, 3, "--fallback-url", leader.leader_url)
    (old_name,) = [row["name"] for row in downstream.node.execute("SELECT name FROM pgsync.sync_group")]
    untouched = "SELECT xmin::text AS x FROM dossier WHERE name = 'd1'"
    written_at = downstream.node.execute(untouched)[0]["x"]
    at_once = {FALLBACK_AFTER_ENV: "0"}
    relay.node.cluster.stop(mode="immediate")
    try:
        add_dossiers(leader.node, wanted, 2, prefix="meanwhile")
        leader.node.execute("DELETE FROM dossier WHERE name = 'd0'")
        downstream.cli("tick", env=at_once)  # finds the relay unreachable
        moved = downstream.cli("tick", env=at_once)
        assert moved.exit_code == 0, moved.stderr
        (group,) = downstream.node.execute("SELECT name, leader_url, fallback_urls FROM pgsync.sync_group")
        assert group["leader_url"] == leader.leader_url and group["fallback_urls"] == [relay.leader_url]
        assert group["name"] != old_name
        assert_converged(leader, downstream, [(wanted, local)], outside={"dossier": 0, "dossier_face": 0})
        assert downstream.node.execute(untouched)[0]["x"] == written_at, "repaired in place, not copied again"
        add_dossiers(leader.node, wanted, 1, prefix="later")
        downstream.ok("sync", "--all")
        assert_converged(leader, downstream, [(wanted, local)])
        orphans = downstream.node.execute("SELECT slot_name FROM pgsync.orphan_slot")
        assert [row["slot_name"] for row in orphans] == [old_name]
    finally:
        relay.node.cluster.start()
    downstream.ok("tick")
    assert not downstream.node.execute("SELECT 1 FROM pgsync.orphan_slot")
    assert not relay.node.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [old_name])


def _states(site: Site) -> set[str]:
    return {row["state"] for row in site.node.execute("SELECT state FROM pgsync.link")}


def test_a_face_model_changed_on_the_leader_pauses_both_hops(
    chain: tuple[Site, Site, Site], tmp_path: Path
) -> None:
    """The relay's face model is its Leader's: when the Leader's changes, the relay's streams
    pause, and the relay tells its downstream the Leader's new model, so they pause too."""
    leader, relay, downstream = chain
    wanted, local = _relayed_list(chain, 2)
    retrained = Site(
        leader.node, write_config(tmp_path / "retrained.yaml", leader.node, "leader", face_model="v3")
    )
    retrained.ok("setup")
    assert relay.cli("sync", "--all").exit_code != 0
    assert _states(relay) == {"paused"}
    refused = downstream.cli("sync", "--all")
    assert refused.exit_code != 0 and "'v3'" in refused.stderr, refused.stderr
    assert _states(downstream) == {"paused"}

    leader.ok("setup")  # the model back
    add_dossiers(leader.node, wanted, 1, prefix="after")
    relay.ok("sync", "--all")
    downstream.ok("sync", "--all")
    assert _states(relay) == _states(downstream) == {"ready"}
    assert_converged(leader, downstream, [(wanted, local)])


def test_a_relays_web_address_serves_downstream_attaches(chain: tuple[Site, Site, Site]) -> None:
    """`serve` on a relay runs the Subscriber's API and answers the handshake a downstream
    attach by web address asks, as a Leader's does."""
    leader, relay, downstream = chain
    wanted = _on_the_relay(chain, 2)
    local = make_list(downstream.node, "Here")
    token = make_api_token(relay, read_only=True)
    with serving(relay.config_path) as relay_web:
        downstream.ok(*attach_args(relay_web, wanted, local))
        upstream = downstream.node.execute("SELECT leader_url FROM pgsync.sync_group")[0]["leader_url"]
        assert upstream.startswith("postgresql://"), "the stream runs on the relay's PostgreSQL URL"

        # Its API shows both sides: its own replicas, and what it publishes to whom.
        def get(path: str) -> bytes:
            headers = {"Authorization": f"Token {token}"}
            request = urllib.request.Request(relay_web + path, headers=headers)  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
                body: bytes = response.read()
                return body

        (replica,) = json.loads(get("/sync/dossier-lists/"))
        assert replica["local_list"] == wanted
        (published,) = json.loads(get("/sync/published-lists/"))
        assert published["list"] == wanted
        assert [stream["subscriber"] for stream in published["subscribers"]] == ["subscriber_b site"]
        metrics = get("/metrics").decode()
        assert f'pgsync_dossier_link_state{{local_list="{wanted}"' in metrics
        assert 'pgsync_dossier_leader_slot_wal_status{subscriber="subscriber_b site"' in metrics
    assert_converged(leader, downstream, [(wanted, local)])


def test_a_lost_relay_is_replaced_by_a_second_relay(
    chain: tuple[Site, Site, Site], defaults_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Two relays of one Leader serve the same list under the same id: the downstream's
    fallback is the second, which takes the stream over when the first is lost. (The second
    relay has a cluster of its own: a subscription to a publication of its own cluster waits
    for itself when it creates its slot.)"""
    leader, relay, downstream = chain
    second_node = Node("second relay", defaults_cluster, "Second relay's dossiers")
    second_node.janitor(second_node.dbname, template=TEMPLATE_DB).init()
    try:
        second = Site(second_node, write_config(tmp_path / "second.yaml", second_node, "relay"))
        second.ok("setup")
        wanted = _on_the_relay(chain, 3)
        _list_with_id(second, wanted, "Wanted")
        attach(second, leader, wanted, wanted)
        local = make_list(downstream.node, "Here")
        attach(downstream, relay, wanted, local, "--fallback-url", second.leader_url)
        at_once = {FALLBACK_AFTER_ENV: "0"}
        relay.node.cluster.stop(mode="immediate")
        try:
            add_dossiers(leader.node, wanted, 2, prefix="meanwhile")
            second.ok("sync", "--all")
            downstream.cli("tick", env=at_once)  # finds the relay unreachable
            moved = downstream.cli("tick", env=at_once)
            assert moved.exit_code == 0, moved.stderr
            (group,) = downstream.node.execute("SELECT leader_url FROM pgsync.sync_group")
            assert group["leader_url"] == second.leader_url
            assert_converged(leader, downstream, [(wanted, local)])
        finally:
            relay.node.cluster.start()
        downstream.ok("tick")  # the first relay's orphan slot goes
        assert not relay.node.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgsync\\_%'")
    finally:
        # The downstream's stream first: its apply worker would reconnect to the second
        # relay's slot between the slot's drop and the database's.
        drop_subscriptions(downstream.node)
        drop_subscriptions(second_node)
        drop_slots(second_node.cluster)
        second_node.janitor(second_node.dbname).drop()


def test_a_relay_cannot_go_below_the_revision_that_knows_it(chain: tuple[Site, Site, Site]) -> None:
    _leader, relay, _downstream = chain
    refused = relay.cli("migrate", "--to", "0011")
    assert refused.exit_code != 0 and "this node is a relay" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert relay.node.execute("SELECT version_num FROM alembic_version")[0]["version_num"] == "0013"

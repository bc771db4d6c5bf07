"""PostgreSQL major upgrades with `pg_upgrade`, as the runbook has them, on real clusters.

The old clusters run Debian's PostgreSQL 15, the new ones the embedded 18 (both are in CI).
A Leader upgraded from 15 keeps no logical slot (pg_upgrade carries slots from 17 only) and
gets a new system identifier; a Subscriber upgraded from 15 gets its subscriptions back
disabled and without their tables. After each, `tick` alone must bring every replica back,
equal by the oracle, without a full copy: a replica row nobody wrote keeps its row version
(`xmin`) through the upgrade.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsync_dossier.clusters import BOOTSTRAP_SUPERUSER, LocalCluster, _candidates, free_port, server_version
from tests.harness import (
    TEMPLATE_DB,
    Node,
    Site,
    _start_cluster,
    add_dossiers,
    assert_converged,
    attach_args,
    group_names,
    make_list,
    write_config,
)

OLD_MAJOR = 15
NEW_MAJOR = 18
#: The slot SQL functions `setup` revokes from PUBLIC on a Leader (one is enough to tell).
A_SLOT_FUNCTION = "pg_catalog.pg_drop_replication_slot(name)"


def _bindir(major: int) -> Path:
    for candidate in _candidates():
        if (candidate / "pg_upgrade").is_file() and server_version(candidate).split(".")[0] == str(major):
            return candidate
    pytest.skip(f"pg_upgrade needs PostgreSQL {major} server binaries (CI has {OLD_MAJOR} and {NEW_MAJOR})")


@pytest.fixture
def old_cluster(cluster_root: Path) -> Iterator[LocalCluster]:
    cluster = _start_cluster(cluster_root, f"old-{uuid.uuid4().hex[:8]}", _bindir(OLD_MAJOR))
    yield cluster
    cluster.remove()


def _checksums_on(cluster: LocalCluster) -> bool:
    out = subprocess.run(
        [str(cluster.bindir / "pg_controldata"), str(cluster.datadir)],
        capture_output=True,
        text=True,
        check=True,
        **cluster._as_server_user(),
    ).stdout
    return "Data page checksum version:           0" not in out


def pg_upgrade(old: LocalCluster, root: Path) -> LocalCluster:
    """What a DBA does: stop the old server, initdb the new version like the old one, run
    pg_upgrade (copy mode), start the new server on the old one's port."""
    new_bindir = _bindir(NEW_MAJOR)
    old.stop()
    new = LocalCluster(
        root / f"{old.directory.name}-{NEW_MAJOR}",
        bindir=new_bindir,
        port=old.port,
        settings=old.settings,
        socket_dir=old.socket_dir,
        initdb_options=() if _checksums_on(old) else ("--no-data-checksums",),
    ).init()
    done = subprocess.run(
        [
            str(new_bindir / "pg_upgrade"),
            "--old-bindir", str(old.bindir), "--new-bindir", str(new_bindir),
            "--old-datadir", str(old.datadir), "--new-datadir", str(new.datadir),
            "--username", BOOTSTRAP_SUPERUSER, "--socketdir", str(old.socket_dir),
            "--old-port", str(free_port()), "--new-port", str(free_port()),
        ],
        capture_output=True,
        text=True,
        check=False,
        **{**new._as_server_user(), "cwd": str(new.directory)},
    )  # fmt: skip
    if done.returncode != 0:
        logs = "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(new.datadir.glob("pg_upgrade_output.d/*/log/*.log"))
        )
        pytest.fail(f"pg_upgrade failed:\n{done.stdout[-3000:]}\n{logs}")
    return new.start()


def row_versions(node: Node, local_list: int) -> dict[str, str]:
    """Each replica row's xmin, by table and id: a row rewritten by a copy or repair changes it."""
    versions: dict[str, str] = {}
    for table in ("dossier", "dossier_face"):
        for row in node.execute(
            f"SELECT id::text AS id, xmin::text AS v FROM public.{table} WHERE dossier_list_id = %s",
            [local_list],
        ):
            versions[f"{table}/{row['id']}"] = row["v"]
    return versions


def kept(before: dict[str, str], after: dict[str, str], written: set[str]) -> list[str]:
    """The rows nobody wrote since `before` whose version changed (a full copy changes all)."""
    return [
        key
        for key, version in before.items()
        if key.split("/")[1] not in written and after.get(key) != version
    ]


def _leader(node: Node, tmp_path: Path) -> Site:
    node.janitor(node.dbname, template=TEMPLATE_DB).init()
    site = Site(node, write_config(tmp_path / "hq.yaml", node, "leader"))
    site.ok("setup")
    return site


def _subscriber(node: Node, tmp_path: Path) -> Site:
    site = Site(node, write_config(tmp_path / f"{node.name}.yaml", node, "subscriber"))
    site.ok("setup")
    return site


def _carry(files: list[str], old: LocalCluster, new: LocalCluster) -> None:
    """The runbook's one manual step: the Leader logins' password files, as the server's user."""
    new.stop()
    for name in files:
        target = new.datadir / name
        shutil.copy2(old.datadir / name, target)
        os.chmod(target, 0o600)
        stat = (new.datadir / "PG_VERSION").stat()
        os.chown(target, stat.st_uid, stat.st_gid)
    new.start()


def _revoked(node: Node) -> bool:
    rows = node.execute("SELECT has_function_privilege('public', %s, 'EXECUTE') AS may", [A_SLOT_FUNCTION])
    return not rows[0]["may"]


def test_pg_upgrade_of_the_leader_from_15_to_18(
    old_cluster: LocalCluster, nodes: dict[str, Node], cluster_root: Path, tmp_path: Path
) -> None:
    hq = Node("hq", old_cluster, "HQ dossiers")
    leader = _leader(hq, tmp_path)
    subs = [_subscriber(nodes[name], tmp_path) for name in ("subscriber_a", "subscriber_b")]
    remotes = [make_list(hq, "wanted"), make_list(hq, "missing")]
    pairs: list[list[tuple[int, int]]] = []
    for sub, remote in zip(subs, remotes, strict=True):
        add_dossiers(hq, remote, 15, prefix=f"l{remote}-")
        local = make_list(sub.node, f"replica of {remote}")
        sub.ok(*attach_args(leader.leader_url, remote, local))
        pairs.append([(remote, local)])
    # Both Subscribers' groups, plus a list the first one shares with the second.
    shared = make_list(hq, "shared")
    add_dossiers(hq, shared, 5, prefix="s-")
    local_shared = make_list(subs[0].node, "replica of shared")
    subs[0].ok(*attach_args(leader.leader_url, shared, local_shared))
    pairs[0].append((shared, local_shared))
    for sub, sub_pairs in zip(subs, pairs, strict=True):
        sub.ok("sync", "--all")
        assert_converged(leader, sub, sub_pairs)
    before = [
        row_versions(sub.node, local)
        for sub, sub_pairs in zip(subs, pairs, strict=True)
        for _, local in sub_pairs
    ]
    groups_before = [group_names(sub) for sub in subs]

    # Written after the Subscribers' last sync: their slots never confirm it before the upgrade.
    written = {str(i) for i in add_dossiers(hq, remotes[0], 2, prefix="late-")}
    changed = hq.execute(
        "UPDATE dossier SET comment = 'edited before the upgrade' WHERE id = "
        "(SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id LIMIT 1) RETURNING id::text AS id",
        [remotes[1]],
    )
    written |= {row["id"] for row in changed}

    assert _revoked(hq)
    prepared = leader.ok("prepare-upgrade", "--json").json()
    assert prepared["role"] == "leader" and prepared["slots_kept"] is False
    assert len(prepared["slots"]) == 2
    assert not _revoked(hq), "prepare-upgrade gives the slot functions back to PUBLIC"

    hq.cluster = pg_upgrade(old_cluster, cluster_root)
    try:
        assert hq.execute("SHOW server_version_num")[0]["server_version_num"].startswith(str(NEW_MAJOR))
        assert hq.execute("SELECT count(*) AS n FROM pg_replication_slots")[0]["n"] == 0  # 15: none kept
        leader.ok("setup")
        assert _revoked(hq), "setup takes the slot functions from PUBLIC again"
        written |= {str(i) for i in add_dossiers(hq, remotes[1], 2, prefix="after-")}

        for sub in subs:
            ticked = sub.cli("tick")
            assert ticked.exit_code == 0, ticked.stderr
        for sub, sub_pairs in zip(subs, pairs, strict=True):
            assert_converged(leader, sub, sub_pairs)
        after = [
            row_versions(sub.node, local)
            for sub, sub_pairs in zip(subs, pairs, strict=True)
            for _, local in sub_pairs
        ]
        for old_versions, new_versions in zip(before, after, strict=True):
            assert kept(old_versions, new_versions, written) == [], "rows nobody wrote were copied again"
        # The same Leader for its Subscribers (a new system identifier, the same leader_id):
        # the same groups, and no second login.
        assert [group_names(sub) for sub in subs] == groups_before
        assert [
            sub.node.execute("SELECT count(*) AS n FROM pgsync.leader_login")[0]["n"] for sub in subs
        ] == [1, 1]
        slots = hq.execute("SELECT slot_name, active FROM pg_replication_slots ORDER BY 1")
        assert len(slots) == 2, slots
        # The streams carry the Leader's writes again, without another tick.
        more = add_dossiers(hq, remotes[0], 1, prefix="streamed-")
        subs[0].ok("sync", "--all")
        assert_converged(leader, subs[0], pairs[0])
        assert subs[0].node.execute("SELECT count(*) AS n FROM dossier WHERE id = %s", [more[0]])[0]["n"] == 1
    finally:
        hq.cluster.remove()


def test_pg_upgrade_of_a_subscriber_from_15_to_18(
    old_cluster: LocalCluster, nodes: dict[str, Node], cluster_root: Path, tmp_path: Path
) -> None:
    leader_node = nodes["leader"]
    leader = Site(leader_node, write_config(tmp_path / "leader.yaml", leader_node, "leader"))
    leader.ok("setup")
    site = Node("site", old_cluster, "site dossiers")
    site.janitor(site.dbname, template=TEMPLATE_DB).init()
    sub = _subscriber(site, tmp_path)
    remotes = [make_list(leader_node, "first"), make_list(leader_node, "second")]
    pairs = []
    for remote in remotes:
        add_dossiers(leader_node, remote, 15, prefix=f"l{remote}-")
        local = make_list(site, f"replica of {remote}")
        sub.ok(*attach_args(leader.leader_url, remote, local))
        pairs.append((remote, local))
    sub.ok("sync", "--all")
    assert_converged(leader, sub, pairs)
    before = [row_versions(site, local) for _, local in pairs]
    groups_before = group_names(sub)

    prepared = sub.ok("prepare-upgrade", "--json").json()
    assert prepared["role"] == "subscriber" and prepared["carry_files"], prepared
    # The Leader goes on while the Subscriber is down: its slot keeps what it writes.
    written = {str(i) for i in add_dossiers(leader_node, remotes[0], 3, prefix="while-down-")}
    new = pg_upgrade(old_cluster, cluster_root)
    site.cluster = new
    try:
        _carry(prepared["carry_files"], old_cluster, new)
        assert site.execute("SELECT count(*) AS n FROM pg_subscription WHERE subenabled")[0]["n"] == 0

        ticked = sub.cli("tick")
        assert ticked.exit_code == 0, ticked.stderr
        assert_converged(leader, sub, pairs)
        after = [row_versions(site, local) for _, local in pairs]
        for old_versions, new_versions in zip(before, after, strict=True):
            assert kept(old_versions, new_versions, written) == [], "rows nobody wrote were copied again"
        settled = site.execute("SELECT upgrading_from IS NULL AS settled FROM pgsync.node")[0]["settled"]
        assert settled and group_names(sub) == groups_before, "the move was taken for the announced upgrade"
        # The stream carries the Leader's writes again.
        written |= {str(i) for i in add_dossiers(leader_node, remotes[1], 2, prefix="after-")}
        sub.ok("sync", "--all")
        assert_converged(leader, sub, pairs)
    finally:
        new.remove()


def test_pg_upgrade_of_a_relay_from_15_to_18(
    old_cluster: LocalCluster, nodes: dict[str, Node], cluster_root: Path, tmp_path: Path
) -> None:
    """A relay is both: its password files carried, its downstream slot lost (15 keeps none),
    its own subscription back without its tables. `setup` then `tick` on the relay and `tick`
    downstream bring both hops back without a full copy."""
    leader_node = nodes["leader"]
    leader = Site(leader_node, write_config(tmp_path / "leader.yaml", leader_node, "leader"))
    leader.ok("setup")
    relay_node = Node("relay", old_cluster, "relay dossiers")
    relay_node.janitor(relay_node.dbname, template=TEMPLATE_DB).init()
    relay = Site(relay_node, write_config(tmp_path / "relay.yaml", relay_node, "relay"))
    relay.ok("setup")
    downstream = _subscriber(nodes["subscriber_b"], tmp_path)
    remote = make_list(leader_node, "watched")
    add_dossiers(leader_node, remote, 15)
    relay_node.execute("INSERT INTO dossier_list (id, name) VALUES (%s, 'watched')", [remote])
    relay.ok(*attach_args(leader.leader_url, remote, remote))
    local = make_list(downstream.node, "replica")
    downstream.ok(*attach_args(relay.leader_url, remote, local))
    assert_converged(leader, downstream, [(remote, local)])
    before = (row_versions(relay_node, remote), row_versions(downstream.node, local))

    prepared = relay.ok("prepare-upgrade", "--json").json()
    assert prepared["role"] == "relay" and prepared["carry_files"] and prepared["slots"], prepared
    assert prepared["slots_kept"] is False and not _revoked(relay_node)
    written = {str(i) for i in add_dossiers(leader_node, remote, 3, prefix="while-down-")}
    new = pg_upgrade(old_cluster, cluster_root)
    relay_node.cluster = new
    try:
        _carry(prepared["carry_files"], old_cluster, new)
        relay.ok("setup")
        assert _revoked(relay_node)
        for site in (relay, downstream):
            ticked = site.cli("tick")
            assert ticked.exit_code == 0, ticked.stderr
        relay.ok("sync", "--all")
        downstream.ok("sync", "--all")
        assert_converged(leader, relay, [(remote, remote)])
        assert_converged(leader, downstream, [(remote, local)])
        after = (row_versions(relay_node, remote), row_versions(downstream.node, local))
        for old_versions, new_versions in zip(before, after, strict=True):
            assert kept(old_versions, new_versions, written) == [], "rows nobody wrote were copied again"
    finally:
        new.remove()

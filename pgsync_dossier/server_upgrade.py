"""Before `pg_upgrade` of a node's server: what pgsync-dossier left there that must not stop it,
and what the new cluster needs that pg_upgrade does not carry (docs/runbook.md, "Upgrading
PostgreSQL").

On a Leader, `setup` revoked the slot SQL functions from PUBLIC; pg_upgrade restores the old
cluster's privileges on pg_catalog objects and fails on one whose signature changed in the new
major version, so they are given back here and taken again by the `setup` that follows. A
Leader keeps its logical slots through pg_upgrade only from 17, and only slots that consumed
all WAL: the ones that have not are named. On a Subscriber, the move to a new cluster must not
be taken for a copy (placement.py), and the password files of its Leader logins live in the
data directory, which pg_upgrade does not copy.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from pgsync_dossier import catalog, leader_install, pg
from pgsync_dossier.config import Config

#: pg_upgrade keeps logical slots from this version of the old cluster on.
SLOTS_KEPT_SINCE = 170000


class SlotToKeep(TypedDict):
    """A Leader slot pg_upgrade carries only once it consumed all WAL."""

    slot: str
    subscriber: str
    unconfirmed_bytes: int | None


class Prepared(TypedDict):
    """`prepare-upgrade --json`, in this order; the CLI adds `next` (advice's lines)."""

    role: str
    server_version: int
    slots_kept: bool | None
    slots: list[SlotToKeep]
    data_directory: str
    carry_files: list[str]
    next: NotRequired[list[str]]


def prepare(config: Config) -> Prepared:
    """A relay is prepared as both: its downstream slots as a Leader's, its own password files
    as a Subscriber's."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        node = catalog.require_role(conn, config.role, "prepare-upgrade")
        version = pg.server_version(conn)
        data_directory = pg.setting(conn, "data_directory")
        with conn.transaction():
            catalog.mark_upgrading(conn)
        slots: list[SlotToKeep] = []
        if node.role != "subscriber":
            # Read before the GRANT below, whose own WAL no slot could have confirmed yet.
            slots = [
                SlotToKeep(slot=row.name, subscriber=row.subscriber_node, unconfirmed_bytes=row.lag_bytes)
                for row in leader_install.registered_groups(conn)
                if row.slot_exists
            ]
            with conn.transaction():
                conn.execute(pg.query("open_slot_functions", "server_upgrade.sql"))
        files = (
            [row["f"] for row in conn.execute(pg.query("leader_passfiles", "server_upgrade.sql")).fetchall()]
            if node.role != "leader"
            else []
        )
        return Prepared(
            role=node.role,
            server_version=version,
            slots_kept=version >= SLOTS_KEPT_SINCE if node.role != "subscriber" else None,
            slots=slots,
            data_directory=data_directory,
            carry_files=files,
        )


def advice(result: Prepared) -> list[str]:
    """What to do next, one line each, in the order the runbook gives (a relay: both)."""
    lines = []
    if result["carry_files"]:
        lines.append(
            f"copy {len(result['carry_files'])} password file(s) pgsync_*.pgpass from "
            f"{result['data_directory']} into the new data directory (mode 0600, owned by the "
            "server's user) before you start the new server: they hold this node's Leader logins"
        )
    if result["role"] == "subscriber":
        lines.append("after pg_upgrade: start the new server, then run pgsync-dossier tick (or sync --all)")
        return lines
    behind = [slot for slot in result["slots"] if (slot["unconfirmed_bytes"] or 0) > 0]
    if result["slots_kept"]:
        lines.extend(
            f"slot {slot['slot']} ({slot['subscriber']}) has {slot['unconfirmed_bytes']} bytes of WAL "
            "not confirmed: pg_upgrade keeps a slot only when it consumed all WAL; stop writes and run "
            "pgsync-dossier sync --all on that Subscriber, or its next tick recreates the slot and "
            "repairs in place"
            for slot in behind
        )
    else:
        lines.append(
            f"PostgreSQL {result['server_version'] // 10000} does not carry logical slots through "
            "pg_upgrade: after it, each Subscriber's next tick recreates its slot and repairs its lists "
            "in place (no full copy)"
        )
    lines.append(
        "after pg_upgrade: start the new server, run pgsync-dossier setup here (it revokes the slot "
        "functions again), then tick "
        + ("here and " if result["role"] == "relay" else "")
        + "on every Subscriber"
    )
    return lines

"""Where a node's database lives, and what a change of place means.

A placement is "<system identifier>/<database OID>/<data directory>" (sql/catalog.sql,
`placement`). A copy of a Subscriber's database (restored, cloned, copied as a template)
lives elsewhere and must not stream under the original's names. `pg_upgrade` moves the same
database to a new cluster: a new system identifier and often a new data directory, but the
same database OID and the same relfilenodes (both kept since PostgreSQL 15), on a later
major version. `prepare-upgrade` records a mark, "<placement>|<major>|<relfilenode of
pgsync.node>", so that a move of exactly that kind is taken for what it is; a restore or a
clone keeps neither the relfilenode nor, on the same major version, passes for an upgrade.

A promoted standby (or a point-in-time recovery) keeps the system identifier and the database
OID and writes on a later WAL timeline: it is the same node, but what its old primary applied
last may be missing, while the Leaders' slots have moved past it ("promoted": every replica
owes a repair in place). In the same data directory (a standby on another host, as Patroni
makes them) that is all it can be. In another one it may also be a copy made from a backup or
a standby and promoted while the original runs on ("promoted_elsewhere"): only the operator
knows which (`setup --failover`, or `setup` for a copy). A file-level copy started as a
primary stays on its timeline and is a copy.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["here", "moved_by_upgrade", "promoted", "promoted_elsewhere", "copied"]


def verdict(
    recorded: str | None,
    upgrading_from: str | None,
    current_mark: str,
    recorded_timeline: int | None,
    timeline: int | None,
) -> Verdict:
    current = current_mark.split("|")[0]
    if recorded is None:
        return "here"
    if (
        recorded_timeline is not None
        and timeline is not None
        and timeline > recorded_timeline
        and recorded.split("/")[:2] == current.split("/")[:2]
    ):
        return "promoted" if recorded == current else "promoted_elsewhere"
    if recorded == current:
        return "here"
    if upgrading_from is not None and _upgraded(upgrading_from, current_mark):
        return "moved_by_upgrade"
    return "copied"


def leader_cloned(recorded: str | None, current: str) -> bool:
    """A Leader's database copied into another database of the same cluster (CREATE DATABASE
    ... TEMPLATE): it must not answer as the same Leader. A new system identifier with the
    same database is the same Leader (pg_upgrade, a restore that replaces it); a promoted
    standby has the same of both."""
    if recorded is None:
        return False
    system_before, oid_before = recorded.split("/")[:2]
    system_now, oid_now = current.split("/")[:2]
    return system_before == system_now and oid_before != oid_now


def _upgraded(before_mark: str, after_mark: str) -> bool:
    try:
        before, major_before, filenode_before = before_mark.split("|")
        after, major_after, filenode_after = after_mark.split("|")
    except ValueError:
        return False
    system_before, oid_before = before.split("/")[:2]
    system_after, oid_after = after.split("/")[:2]
    return (
        system_before != system_after
        and oid_before == oid_after
        and filenode_before == filenode_after
        and int(major_after) > int(major_before)
    )

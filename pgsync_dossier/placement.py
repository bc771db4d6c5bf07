"""Where a node's database lives, and what a change of place means.

A placement is "<system identifier>/<database OID>/<data directory>" (sql/catalog.sql,
`placement`). A copy of a Subscriber's database (restored, cloned, copied as a template)
lives elsewhere and must not stream under the original's names. `pg_upgrade` moves the same
database to a new cluster: a new system identifier, often a new data directory, but the
same database OID (kept since PostgreSQL 15). `prepare-upgrade` records the placement
before it (`upgrading_from`), so that a move of exactly that kind is taken for what it is.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["here", "moved_by_upgrade", "copied"]


def verdict(recorded: str | None, upgrading_from: str | None, current: str) -> Verdict:
    if recorded is None or recorded == current:
        return "here"
    if upgrading_from is not None and _upgraded(upgrading_from, current):
        return "moved_by_upgrade"
    return "copied"


def _upgraded(before: str, after: str) -> bool:
    system_before, _, rest_before = before.partition("/")
    system_after, _, rest_after = after.partition("/")
    oid_before = rest_before.partition("/")[0]
    oid_after = rest_after.partition("/")[0]
    return system_before != system_after and oid_before == oid_after

"""Whether a Leader's stream fits this Subscriber's schema, decided before it streams.

Sites migrate one at a time, so a Leader and its Subscribers run different schema revisions
for a while. A group's publication names the columns the Subscriber has in common with the
Leader (groups.publish), so a column only the Leader has is never published and never stops
the stream. What a column list cannot absorb pauses the group (`schema_mismatch`) with the
node to migrate: a column whose type differs (the stream is binary), a column only the
Subscriber has that is NOT NULL without a default (no row could be inserted), and, from a
Leader of a version without column lists, any column only the Leader has. Nothing is lost
meanwhile: the slot keeps the Leader's changes until the stream resumes. When a migration
adds a column on both sides, the group's lists are copied again in place to carry its values
(groups.refresh_columns; docs/runbook.md, "Upgrading pgsync-dossier").
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import class_row

from pgsync_dossier import pg
from pgsync_dossier.leader_client import DossierColumn, LeaderClient

TABLES = ("dossier", "dossier_face")


@dataclass(frozen=True)
class Column:
    type: str
    not_null: bool
    has_default: bool


Columns = dict[str, dict[str, Column]]  # table -> column -> what it is


def columns(rows: list[DossierColumn]) -> Columns:
    found: Columns = {table: {} for table in TABLES}
    for row in rows:
        found.setdefault(row.table_name, {})[row.column_name] = Column(
            row.type, row.not_null, row.has_default
        )
    return found


def columns_of(conn: pg.Connection) -> Columns:
    """The columns of the database `conn` is connected to (this node's, or the Leader's for a copy)."""
    with conn.cursor(row_factory=class_row(DossierColumn)) as cur:
        return columns(cur.execute(pg.query("dossier_columns", "schema_skew.sql")).fetchall())


def common(leader: Columns, here: Columns) -> dict[str, list[str]]:
    """The columns a stream carries: the Leader's, in its order, that this node has too."""
    return {table: [name for name in leader[table] if name in here[table]] for table in TABLES}


def copy_columns(leader: pg.Connection, here: pg.Connection) -> dict[str, list[str]]:
    """What a copy or repair carries: every column both nodes have, whatever their versions."""
    return common(columns_of(leader), columns_of(here))


def stream_columns(conn: pg.Connection, leader: LeaderClient) -> dict[str, list[str]] | None:
    """What the group's publication should name; None for a Leader without column lists (a
    version that does not tell its schema revision), which publishes every column."""
    if leader.versions()[0] is None:
        return None
    return common(columns(leader.dossier_columns()), columns_of(conn))


@dataclass(frozen=True)
class Skew:
    """Why the stream cannot be applied here, and which node's migration ends it."""

    reasons: list[str]
    migrate: str  # "leader", "subscriber" or "older" (the node at the older revision)


def skew(leader: Columns, here: Columns, column_lists: bool) -> Skew | None:
    leader_only: list[str] = []
    required_here: list[str] = []
    retyped: list[str] = []
    for table in TABLES:
        theirs, ours = leader[table], here[table]
        if not column_lists:
            leader_only += [f"{table}.{name}" for name in theirs if name not in ours]
        required_here += [
            f"{table}.{name}"
            for name, column in ours.items()
            if column.not_null
            and not column.has_default
            and (name not in theirs or not theirs[name].not_null)  # the Leader may send no value
        ]
        retyped += [
            f"{table}.{name} is {theirs[name].type} there, {column.type} here"
            for name, column in ours.items()
            if name in theirs and theirs[name].type != column.type
        ]
    reasons = []
    if leader_only:
        reasons.append(f"the Leader publishes {', '.join(leader_only)}, which this Subscriber lacks")
    if required_here:
        reasons.append(f"{', '.join(required_here)} must be set here and the Leader may leave it empty")
    reasons += retyped
    if not reasons:
        return None
    # A retyped column: which node is behind only the revisions' history says, and a node
    # knows its own history only (the other may run a later version).
    behind = "subscriber" if leader_only else "leader" if required_here else "older"
    return Skew(reasons, behind)


def message(
    found: Skew, leader_node: str, leader_versions: tuple[str | None, str | None], own_revision: str | None
) -> str:
    revision, version = leader_versions
    there = f"revision {revision or 'unknown'}" + (f", pgsync-dossier {version}" if version else "")
    where = {
        "subscriber": "on this Subscriber",
        "leader": f"on the Leader ({leader_node})",
        "older": "on the node at the older revision",
    }[found.migrate]
    return (
        f"paused: the schemas differ, the Leader ({leader_node}) is at {there}, this Subscriber at "
        f"revision {own_revision or 'unknown'}: {'; '.join(found.reasons)}; run pgsync-dossier migrate "
        f"{where} (after upgrading pgsync-dossier there if need be), then sync again"
    )


def mismatch(conn: pg.Connection, leader: LeaderClient, leader_node: str) -> str | None:
    """The pause message when the Leader's stream does not fit here; None when it does."""
    row = conn.execute(pg.query("schema_revision", "schema_skew.sql")).fetchone()
    own_revision = row["revision"] if row else None
    leader_versions = leader.versions()
    column_lists = leader_versions[0] is not None
    found = skew(columns(leader.dossier_columns()), columns_of(conn), column_lists)
    return None if found is None else message(found, leader_node, leader_versions, own_revision)

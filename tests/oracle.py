"""The harness's SQL oracle: whether each replica holds exactly its Leader list, judged by
reading both databases with plain SQL and never by asking the product.

It uses nothing of pgsync_dossier: not `verify`, not the content hashes the product keeps in
its own generated columns, not the catalog. The caller says which Leader list each replica
should hold (the test attached it, so it knows); a link the product dropped by mistake is then
still compared. Every column of every dossier and face is compared (a digest of the row with
its list id and the product's `content_hash` left out: the list id differs between the two
sides by design, and the hash is derived from the other columns; while the two schemas differ,
a column only one side has cannot be compared and is left out too), and, on both sides, every
face whose dossier is missing or in another list is counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

#: The two tables a list's content lives in, each with its rows' list column.
TABLES = ("dossier", "dossier_face")
#: Columns the comparison leaves out: the list id is mapped, the hash is the product's.
LEFT_OUT = ("dossier_list_id", "content_hash")

Conn = psycopg.Connection[Any]


#: Rows of a table compared across the two sides fall in one of these.
KINDS = ("missing", "extra", "changed")


def columns_of(conn: Conn, table: str) -> set[str]:
    """The table's columns on this side (the two sides' schemas may differ during an upgrade)."""
    query = (
        "SELECT attname::text FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
    )
    with conn.cursor(row_factory=tuple_row) as cur:
        return {name for (name,) in cur.execute(query, [f"public.{table}"]).fetchall()}


def row_digests(conn: Conn, table: str, list_id: int, left_out: Iterable[str] = LEFT_OUT) -> dict[str, str]:
    """Each row of `list_id` in `table`: its id -> an md5 of every other column. Both sides
    render timestamps and bytes alike whatever their servers' settings (set for this
    transaction only: the caller's session keeps its own)."""
    settle = (
        "SELECT set_config('TimeZone', 'UTC', true), set_config('bytea_output', 'hex', true), "
        "set_config('DateStyle', 'ISO', true), set_config('extra_float_digits', '3', true)"
    )
    query = sql.SQL(
        "SELECT t.id::text, md5((to_jsonb(t) - {left_out}::text[])::text) FROM {table} AS t "
        "WHERE t.dossier_list_id = %s"
    ).format(table=sql.Identifier(table), left_out=sql.Literal(sorted(left_out)))
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(settle)
        return {row_id: digest for row_id, digest in cur.execute(query, [list_id]).fetchall()}


@dataclass(frozen=True)
class TableDiff:
    """Ids of one table's rows: on the Leader only, in the replica only, in both but different."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.changed)


def diff_rows(on_leader: dict[str, str], on_replica: dict[str, str]) -> TableDiff:
    return TableDiff(
        missing=sorted(on_leader.keys() - on_replica.keys()),
        extra=sorted(on_replica.keys() - on_leader.keys()),
        changed=sorted(k for k in on_leader.keys() & on_replica.keys() if on_leader[k] != on_replica[k]),
    )


@dataclass(frozen=True)
class ListComparison:
    """Leader list `remote` against the replica `local`, table by table."""

    remote: int
    local: int
    leader_rows: dict[str, int]
    replica_rows: dict[str, int]
    tables: dict[str, TableDiff]

    @property
    def equal(self) -> bool:
        return all(diff.equal for diff in self.tables.values())

    def describe(self) -> str:
        parts = []
        for table, diff in self.tables.items():
            for kind in KINDS:
                ids: list[str] = getattr(diff, kind)
                if ids:
                    parts.append(
                        f"{len(ids)} {table} {kind} ({', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''})"
                    )
        counts = ", ".join(
            f"{table} {self.leader_rows[table]} on the Leader, {self.replica_rows[table]} here"
            for table in TABLES
        )
        verdict = "equal" if self.equal else "; ".join(parts)
        return f"replica {self.local} of Leader list {self.remote}: {verdict} [{counts}]"


def compare_list(leader: Conn, remote: int, replica: Conn, local: int) -> ListComparison:
    tables: dict[str, TableDiff] = {}
    leader_rows: dict[str, int] = {}
    replica_rows: dict[str, int] = {}
    for table in TABLES:
        one_side_only = columns_of(leader, table) ^ columns_of(replica, table)
        left_out = {*LEFT_OUT, *one_side_only}
        on_leader = row_digests(leader, table, remote, left_out)
        on_replica = row_digests(replica, table, local, left_out)
        leader_rows[table], replica_rows[table] = len(on_leader), len(on_replica)
        tables[table] = diff_rows(on_leader, on_replica)
    return ListComparison(remote, local, leader_rows, replica_rows, tables)


@dataclass(frozen=True)
class FaceApart:
    """A face whose dossier is not in the face's list: missing (`dossier_list` None) or elsewhere."""

    face: str
    dossier: str
    face_list: int
    dossier_list: int | None


def faces_apart(conn: Conn) -> list[FaceApart]:
    """Every face of the database whose dossier is missing or in another list. On the Leader
    the foreign key forbids it; on a Subscriber only the product's apply and copy stand in the
    way (replication workers skip foreign keys)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT f.id::text, f.dossier_id::text, f.dossier_list_id, d.dossier_list_id "
            "FROM dossier_face AS f LEFT JOIN dossier AS d ON d.id = f.dossier_id "
            "WHERE d.dossier_list_id IS DISTINCT FROM f.dossier_list_id ORDER BY f.id"
        ).fetchall()
    return [FaceApart(*row) for row in rows]


def rows_outside(conn: Conn, lists: Iterable[int]) -> dict[str, int]:
    """How many rows each table holds outside `lists` (a leak shows here)."""
    counts = {}
    with conn.cursor(row_factory=tuple_row) as cur:
        for table in TABLES:
            query = sql.SQL("SELECT count(*) FROM {} WHERE dossier_list_id <> ALL (%s)").format(
                sql.Identifier(table)
            )
            row = cur.execute(query, [list(lists)]).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


@dataclass(frozen=True)
class Convergence:
    """What the oracle found for a Subscriber and its Leader."""

    lists: list[ListComparison]
    apart_on_leader: list[FaceApart]
    apart_on_replica: list[FaceApart]

    @property
    def equal(self) -> bool:
        return all(c.equal for c in self.lists) and not self.apart_on_leader and not self.apart_on_replica

    def count(self, table: str, kind: str) -> int:
        """Rows of `table` that are `kind` (missing, extra, changed) summed over the lists."""
        return sum(len(getattr(c.tables[table], kind)) for c in self.lists)

    def counts(self) -> dict[str, int]:
        """Rows of both tables by kind, summed over the lists: what `verify` reports."""
        return {kind: sum(self.count(table, kind) for table in TABLES) for kind in KINDS}

    def problems(self) -> list[str]:
        found = [c.describe() for c in self.lists if not c.equal]
        for side, apart in (("Leader", self.apart_on_leader), ("Subscriber", self.apart_on_replica)):
            for face in apart[:5]:
                where = "missing" if face.dossier_list is None else f"in list {face.dossier_list}"
                found.append(
                    f"{side}: face {face.face} in list {face.face_list} apart from its dossier "
                    f"{face.dossier} ({where})"
                )
            if len(apart) > 5:
                found.append(f"{side}: {len(apart) - 5} more faces apart from their dossier")
        return found


def convergence(
    leader: Conn,
    replica: Conn,
    pairs: Iterable[tuple[int, int]],
    apart_on_leader: list[FaceApart] | None = None,
) -> Convergence:
    """Every (Leader list, replica) pair compared, and the faces apart on both sides (the
    Leader's given by a caller that judges several Subscribers of it, so it is read once)."""
    return Convergence(
        [compare_list(leader, remote, replica, local) for remote, local in pairs],
        faces_apart(leader) if apart_on_leader is None else apart_on_leader,
        faces_apart(replica),
    )

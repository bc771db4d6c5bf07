"""Compare a Leader list with its replica, and repair the replica in place.

Each server keeps a hash of each row's content (migration 0005), so a comparison reads only
an index on both sides: per chunk of ids, the number of rows and the XOR of their hashes.
Only the chunks that differ are compared row by row, which names every difference: rows the
Leader has and the replica has not (missing), rows the replica has and the Leader has not
(extra), rows both have with different content (changed). The repair copies the missing and
changed rows from the Leader, at the same snapshot, and deletes the extra ones, in one local
transaction: readers never see the list empty, and its cost follows the differences plus one
index scan on each side.

The Leader side runs in one repeatable-read snapshot. For a repair the caller has paused the
group's stream first: the stream resumes from where it paused, which is before the snapshot,
so nothing committed after it can be overwritten by the repair.
"""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgsync_dossier import copier, pg, subscriber
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import DeadlineExceeded, OperationFailed
from pgsync_dossier.leader import LeaderClient

TABLES = ("dossier", "dossier_face")
#: About this many rows per chunk: few enough that a difference costs a handful of rows.
ROWS_PER_CHUNK = 8
MAX_CHUNK_BITS = 16


@dataclass
class TableDifference:
    missing: list[uuid.UUID] = field(default_factory=list)
    extra: list[uuid.UUID] = field(default_factory=list)
    changed: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Comparison:
    """What differs between a Leader list and its replica, table by table."""

    tables: dict[str, TableDifference]
    leader_rows: dict[str, int]
    local_rows: dict[str, int]
    chunks_compared: int = 0
    chunks_differing: int = 0

    @property
    def equal(self) -> bool:
        return not any(d.missing or d.extra or d.changed for d in self.tables.values())

    def counts(self) -> dict[str, int]:
        return {
            kind: sum(len(getattr(d, kind)) for d in self.tables.values())
            for kind in ("missing", "extra", "changed")
        }

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "equal"


def chunk_shift(rows: int) -> int:
    """The shift that makes about ROWS_PER_CHUNK rows per chunk (16-bit id prefixes at most)."""
    bits = max(0, min(MAX_CHUNK_BITS, math.ceil(math.log2(max(rows, 1) / ROWS_PER_CHUNK)) if rows > 1 else 0))
    return MAX_CHUNK_BITS - bits


def _digests(conn: pg.Connection, table: str, list_id: int, shift: int) -> dict[int, tuple[int, int]]:
    rows = conn.execute(pg.query("chunk_digests", table=table), {"list": list_id, "shift": shift}).fetchall()
    return {int(row["chunk"]): (int(row["n"]), int(row["x"])) for row in rows}


def id_ranges(chunks: list[int], shift: int) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The id ranges (lowest, highest) that sorted chunks cover, neighbours merged: a chunk is
    the ids whose top 16 bits, shifted right by `shift`, equal it."""
    lows: list[uuid.UUID] = []
    highs: list[uuid.UUID] = []
    rest = 128 - MAX_CHUNK_BITS + shift
    for chunk in chunks:
        low, high = chunk << rest, ((chunk + 1) << rest) - 1
        if highs and highs[-1].int + 1 == low:
            highs[-1] = uuid.UUID(int=high)
        else:
            lows.append(uuid.UUID(int=low))
            highs.append(uuid.UUID(int=high))
    return lows, highs


def _rows(
    conn: pg.Connection, table: str, list_id: int, ranges: tuple[list[uuid.UUID], list[uuid.UUID]]
) -> dict[uuid.UUID, int]:
    lows, highs = ranges
    rows = conn.execute(
        pg.query("range_rows", table=table), {"list": list_id, "lows": lows, "highs": highs}
    ).fetchall()
    return {row["id"]: int(row["content_hash"]) for row in rows}


def compare(source: pg.Connection, local: pg.Connection, remote_list: int, local_list: int) -> Comparison:
    """Compare at `source`'s snapshot (a repeatable-read transaction on the Leader) with what
    `local` sees now. The two sides are read at the same time, each by its own server."""
    result = Comparison({}, {}, {})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgsync-compare") as pool:
        for table in TABLES:
            # The chunking follows the Leader's size; both sides use the same.
            size = sum(n for n, _x in _digests(source, table, remote_list, MAX_CHUNK_BITS).values())
            shift = chunk_shift(size)
            mine = pool.submit(_digests, local, table, local_list, shift)
            theirs = _digests(source, table, remote_list, shift)
            ours = mine.result()
            differing = sorted(
                chunk for chunk in theirs.keys() | ours.keys() if theirs.get(chunk) != ours.get(chunk)
            )
            result.chunks_compared += len(theirs.keys() | ours.keys())
            result.chunks_differing += len(differing)
            result.leader_rows[table] = sum(n for n, _x in theirs.values())
            result.local_rows[table] = sum(n for n, _x in ours.values())
            difference = TableDifference()
            if differing:
                ranges = id_ranges(differing, shift)
                mine_rows = pool.submit(_rows, local, table, local_list, ranges)
                their_rows = _rows(source, table, remote_list, ranges)
                our_rows = mine_rows.result()
                difference.missing = sorted(their_rows.keys() - our_rows.keys())
                difference.extra = sorted(our_rows.keys() - their_rows.keys())
                difference.changed = sorted(
                    i for i in their_rows.keys() & our_rows.keys() if their_rows[i] != our_rows[i]
                )
            result.tables[table] = difference
    return result


def snapshot(leader: LeaderClient) -> pg.Connection:
    """A Leader connection in a repeatable-read, read-only transaction: one consistent view."""
    conn = leader.connect(autocommit=False, statement_timeout_ms=0)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def compare_list(leader: LeaderClient, local: pg.Connection, remote_list: int, local_list: int) -> Comparison:
    source = snapshot(leader)
    try:
        return compare(source, local, remote_list, local_list)
    except psycopg.Error as exc:
        raise leader.error(exc) if source.broken else _local_error(exc, local_list) from None
    finally:
        source.close()


def _local_error(exc: psycopg.Error, local_list: int) -> OperationFailed:
    reason = exc.diag.message_primary or pg.first_line(str(exc))
    return OperationFailed(f"comparing list {local_list} failed: {reason}")


@dataclass(frozen=True)
class Repair:
    before: dict[str, int]  # missing / extra / changed rows found
    dossiers: int  # rows of the list afterwards (the Leader's, at the snapshot)
    faces: int


def repair_list(
    leader: LeaderClient,
    database_url: str,
    remote_list: int,
    local_list: int,
    group_id: int,
    deadline: Deadline,
) -> Repair:
    """Make the replica equal to the Leader list at one snapshot, in one local transaction.

    The caller has paused the group's stream."""
    source = snapshot(leader)
    try:
        with pg.connect(database_url, what="this Subscriber's database") as local:
            found = compare(source, local, remote_list, local_list)
        if not found.equal:
            _fix(source, database_url, found, remote_list, local_list, group_id, deadline)
        return Repair(found.counts(), found.leader_rows["dossier"], found.leader_rows["dossier_face"])
    except psycopg.errors.QueryCanceled:
        raise DeadlineExceeded(f"the repair of list {local_list} ran out of time") from None
    except psycopg.Error as exc:
        raise leader.error(exc) if source.broken else _local_error(exc, local_list) from None
    finally:
        source.close()


def _fix(
    source: pg.Connection,
    database_url: str,
    found: Comparison,
    remote_list: int,
    local_list: int,
    group_id: int,
    deadline: Deadline,
) -> None:
    with pg.connect(
        database_url,
        what="this Subscriber's database",
        autocommit=False,
        statement_timeout_ms=max(int(deadline.remaining() * 1000), 1),
        application_name=copier.application_name(local_list),
    ) as writer:
        subscriber.write_as_apply(writer)
        for table in TABLES:
            difference = found.tables[table]
            wanted = difference.missing + difference.changed
            if wanted:
                stage = sql.Identifier(f"stage_{table}")
                writer.execute(
                    sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                        stage, sql.Identifier("public", table)
                    )
                )
                select = copier.select_rows(table, remote_list, local_list, wanted)
                copier.pipe(source, writer, select, copier.copy_in(stage, table))
                writer.execute(copier.upsert(table), {"local": local_list, "group": group_id})
            if difference.extra:
                writer.execute(
                    pg.query("delete_rows", table=table), {"list": local_list, "ids": difference.extra}
                )
        writer.commit()


def describe(found: Comparison) -> dict[str, Any]:
    """The comparison as verify reports it."""
    return {
        "dossiers": found.local_rows.get("dossier"),
        "faces": found.local_rows.get("dossier_face"),
        "leader_dossiers": found.leader_rows.get("dossier"),
        "leader_faces": found.leader_rows.get("dossier_face"),
        "match": found.equal,
        **found.counts(),
    }

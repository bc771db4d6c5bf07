"""Compare a Leader list with its replica, and repair the replica in place.

Each server keeps a hash of each row's content (migration 0005), and its index carries that
hash and the row's version (migration 0011), so a comparison reads only an index on both
sides: per chunk of ids, the number of rows and the XOR of their states (content and version),
each hashed once more (a row's hash is the XOR of its fields' hashes, so the same change on
two rows of a chunk would otherwise cancel out; see the chunk_digests query). Only the
chunks that differ are compared row by row, which names every difference: rows the Leader
has and the replica has not (missing), rows the replica has and the Leader has not (extra),
rows both have with a different content or version (changed: the version orders moves between
two groups' lists, see sql/compare.sql). The repair copies the missing and
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from pgsync_dossier import copier, pg, schema_skew, subscriber
from pgsync_dossier.catalog import Group
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import DeadlineExceeded, OperationFailed
from pgsync_dossier.leader_client import LeaderClient
from pgsync_dossier.results import Differences

T = TypeVar("T")
TABLES = ("dossier", "dossier_face")
#: About this many rows per chunk (8 to 16, as chunks come in powers of two): few enough that
#: a difference costs a handful of rows, many enough that the digests stay a fraction of the
#: list (measured at 100,000 and 300,000 rows against 8 and 32).
ROWS_PER_CHUNK = 16
MAX_CHUNK_BITS = 16
#: Differing chunks whose rows are read (and, in a repair, fixed) at a time: at most a few
#: tens of thousands of rows' records in memory, whatever the list.
CHUNKS_PER_BATCH = 2048


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

    @property
    def equal(self) -> bool:
        return not any(d.missing or d.extra or d.changed for d in self.tables.values())

    def counts(self) -> Differences:
        tables = self.tables.values()
        return Differences(
            missing=sum(len(d.missing) for d in tables),
            extra=sum(len(d.extra) for d in tables),
            changed=sum(len(d.changed) for d in tables),
        )


def _query(name: str, **identifiers: str | sql.Composable) -> sql.Composed:
    return pg.query(name, "compare.sql", **identifiers)


def chunk_shift(rows: int) -> int:
    """The shift that makes about ROWS_PER_CHUNK rows per chunk (16-bit id prefixes at most)."""
    bits = max(0, min(MAX_CHUNK_BITS, math.ceil(math.log2(max(rows, 1) / ROWS_PER_CHUNK)) if rows > 1 else 0))
    return MAX_CHUNK_BITS - bits


#: A chunk as chunk_digests sends it: chunk (int4), rows (int4), digest (int8), big-endian.
DIGEST_BYTES = 16
#: A row as range_rows sends it: id (16 bytes), state (int8: content hash and version).
ROW_BYTES = 24
ID_BYTES = 16
#: Per table (its index in TABLES): the lowest and highest 16-bit id prefix of each range.
Ranges = dict[int, tuple[list[int], list[int]]]
#: The id_rows query's parameters: the list, and per table the ids to read (`<table>_ids`).
IdParams = dict[str, int | list[uuid.UUID]]


def _records(blob: bytes | None, size: int) -> set[bytes]:
    """A packed bytea cut into its fixed-size records."""
    data = blob or b""
    return {data[at : at + size] for at in range(0, len(data), size)}


def _digests(conn: pg.Connection, list_id: int, shifts: list[int]) -> tuple[list[set[bytes]], list[int]]:
    """Per table: the chunks' records, and the rows."""
    params = {
        "list": list_id,
        **{f"{table}_shift": shift for table, shift in zip(TABLES, shifts, strict=True)},
    }
    chunks: list[set[bytes]] = [set() for _table in TABLES]
    rows = [0] * len(TABLES)
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        for t, digests, count in cur.execute(_query("chunk_digests"), params):
            chunks[t], rows[t] = _records(digests, DIGEST_BYTES), int(count)
    return chunks, rows


def id_ranges(chunks: list[int], shift: int) -> tuple[list[int], list[int]]:
    """The ranges of 16-bit id prefixes (lowest, highest) that sorted chunks cover, neighbours
    merged: a chunk is the ids whose top 16 bits, shifted right by `shift`, equal it."""
    lows: list[int] = []
    highs: list[int] = []
    for chunk in chunks:
        low, high = chunk << shift, ((chunk + 1) << shift) - 1
        if highs and highs[-1] + 1 == low:
            highs[-1] = high
        else:
            lows.append(low)
            highs.append(high)
    return lows, highs


def range_params(list_id: int, ranges: Ranges) -> dict[str, int | list[int]]:
    """The range_rows query's parameters: the list, and per table its ranges (none if absent)."""
    params: dict[str, int | list[int]] = {"list": list_id}
    for index, table in enumerate(TABLES):
        params[f"{table}_lows"], params[f"{table}_highs"] = ranges.get(index, ([], []))
    return params


def _rows(conn: pg.Connection, list_id: int, ranges: Ranges) -> list[set[bytes]]:
    """Per table: the rows of the ranges, as (id, state) records."""
    found: list[set[bytes]] = [set() for _table in TABLES]
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        for t, rows in cur.execute(_query("range_rows"), range_params(list_id, ranges)):
            found[t] = _records(rows, ROW_BYTES)
    return found


def _ids(records: set[bytes]) -> set[bytes]:
    return {record[:ID_BYTES] for record in records}


def _uuids(ids: set[bytes]) -> list[uuid.UUID]:
    return [uuid.UUID(bytes=raw) for raw in sorted(ids)]


@dataclass(frozen=True)
class _Plan:
    """What the chunk digests of both sides say: per table (in TABLES' order) the rows on each
    side, the chunking, and the chunks that differ (sorted)."""

    leader_rows: list[int]
    local_rows: list[int]
    shifts: list[int]
    differing: list[list[int]]


def _plan(
    source: pg.Connection, local: pg.Connection, remote_list: int, local_list: int, pool: ThreadPoolExecutor
) -> _Plan:
    # The chunking follows the Leader's size (the replica's may be anything); both sides use
    # the same. The count also opens the Leader's snapshot.
    counts = source.execute(pg.query("list_rows", "copier.sql"), {"list": remote_list}).fetchone() or {}
    sizes = [int(counts.get(key) or 0) for key in ("dossiers", "faces")]  # in TABLES' order
    shifts = [chunk_shift(size) for size in sizes]
    mine = pool.submit(_digests, local, local_list, shifts)
    theirs, _their_rows = _digests(source, remote_list, shifts)
    ours, local_rows = mine.result()
    differing = [
        sorted({int.from_bytes(r[:4], "big") for r in theirs[t] ^ ours[t]}) for t in range(len(TABLES))
    ]
    return _Plan(sizes, local_rows, shifts, differing)


def _differences(
    source: pg.Connection,
    local: pg.Connection,
    remote_list: int,
    local_list: int,
    plan: _Plan,
    pool: ThreadPoolExecutor,
) -> Iterator[tuple[str, TableDifference]]:
    """The differing rows, CHUNKS_PER_BATCH differing chunks of one table at a time: a list
    that differs everywhere (a catch-up repaired in place) is never held whole."""
    for t, chunks in enumerate(plan.differing):
        for at in range(0, len(chunks), CHUNKS_PER_BATCH):
            ranges: Ranges = {t: id_ranges(chunks[at : at + CHUNKS_PER_BATCH], plan.shifts[t])}
            mine = pool.submit(_rows, local, local_list, ranges)
            theirs = _rows(source, remote_list, ranges)
            yield TABLES[t], _difference(theirs[t], mine.result()[t])


def compare(source: pg.Connection, local: pg.Connection, remote_list: int, local_list: int) -> Comparison:
    """Compare at `source`'s snapshot (a repeatable-read transaction on the Leader) with what
    `local` sees now. The two sides are read at the same time, each by its own server, both
    tables in one statement; each side sends its chunks and then the rows of the chunks that
    differ as packed records, compared as sets of bytes, so the Python side costs little next
    to the scans. Every differing id is kept (verify names them): see repair_list for a
    comparison that fixes as it goes."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgsync-compare") as pool:
        plan = _plan(source, local, remote_list, local_list, pool)
        result = Comparison({table: TableDifference() for table in TABLES}, {}, {})
        for table, found in _differences(source, local, remote_list, local_list, plan, pool):
            kept = result.tables[table]
            kept.missing += found.missing
            kept.extra += found.extra
            kept.changed += found.changed
    for index, table in enumerate(TABLES):
        result.leader_rows[table] = plan.leader_rows[index]
        result.local_rows[table] = plan.local_rows[index]
    return result


def recheck(
    leader: LeaderClient, local: pg.Connection, remote_list: int, local_list: int, found: Comparison
) -> Comparison:
    """`found`'s differing rows compared again, at a new Leader snapshot, and only those: what
    still differs. A list being written shows differences that are only the two sides reading
    at different moments (a row the stream applied after the Leader's snapshot was taken); a
    divergence stays whatever the moment."""
    params: IdParams = {"list": remote_list}
    for table in TABLES:
        difference = found.tables[table]
        params[f"{table}_ids"] = difference.missing + difference.extra + difference.changed
    source = leader.snapshot_reader()
    try:
        theirs = _id_rows(source, params)
        ours = _id_rows(local, {**params, "list": local_list})
    except psycopg.Error as exc:
        raise (
            leader.error(exc) if source.broken else _local_error(exc, f"comparing list {local_list}")
        ) from None
    finally:
        source.close()
    result = Comparison({}, dict(found.leader_rows), dict(found.local_rows))
    for index, table in enumerate(TABLES):
        result.tables[table] = _difference(theirs[index], ours[index])
    return result


def _difference(theirs: set[bytes], ours: set[bytes]) -> TableDifference:
    """Rows (id, state records) that are not on both sides in the same state."""
    leader_only = _ids(theirs - ours)
    local_only = _ids(ours - theirs)
    return TableDifference(
        missing=_uuids(leader_only - local_only),
        extra=_uuids(local_only - leader_only),
        changed=_uuids(leader_only & local_only),
    )


def _id_rows(conn: pg.Connection, params: IdParams) -> list[set[bytes]]:
    found: list[set[bytes]] = [set() for _table in TABLES]
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        for t, rows in cur.execute(_query("id_rows"), params):
            found[t] = _records(rows, ROW_BYTES)
    return found


def compare_list(leader: LeaderClient, local: pg.Connection, remote_list: int, local_list: int) -> Comparison:
    source = leader.snapshot_reader()
    try:
        return compare(source, local, remote_list, local_list)
    except psycopg.Error as exc:
        what = f"comparing list {local_list}"
        raise leader.error(exc) if source.broken else _local_error(exc, what) from None
    finally:
        source.close()


def _local_error(exc: psycopg.Error, what: str) -> OperationFailed:
    reason = exc.diag.message_primary or pg.first_line(str(exc))
    return OperationFailed(f"{what} failed: {reason}")


@dataclass(frozen=True)
class Repair:
    before: Differences  # the rows found different, and so fixed
    dossiers: int  # rows of the list afterwards (the Leader's, at the snapshot)
    faces: int


def repair_list(
    leader: LeaderClient,
    database_url: str,
    remote_list: int,
    local_list: int,
    group: Group,
    deadline: Deadline,
    neighbours: Neighbours | None = None,
) -> Repair:
    """Make the replica equal to the Leader list at one snapshot, in one local transaction.

    The caller has paused the group's stream. One local connection compares and then fixes,
    under the command's deadline; `neighbours` are settled in the same transaction (see
    settle_neighbours)."""

    def repair(source: pg.Connection, local: pg.Connection) -> Repair:
        missing = extra = changed = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgsync-compare") as pool:
            plan = _plan(source, local, remote_list, local_list, pool)
            # Each batch of differences is fixed before the next is read (memory stays flat).
            for table, found in _differences(source, local, remote_list, local_list, plan, pool):
                _fix(source, local, table, found, remote_list, local_list, group.id)
                missing, extra, changed = (
                    missing + len(found.missing),
                    extra + len(found.extra),
                    changed + len(found.changed),
                )
        if neighbours is not None:
            _settle_neighbours(source, local, group.id, neighbours)
        return Repair(Differences(missing, extra, changed), plan.leader_rows[0], plan.leader_rows[1])

    what = f"the repair of list {local_list}"
    return _at_one_snapshot(leader, database_url, group, local_list, deadline, what, repair)


@dataclass(frozen=True)
class Neighbours:
    """The group's other lists (Leader list -> local list), and the Leader's WAL position
    from which their rows' versions count as recent."""

    lists: dict[int, int]
    since: int


def settle_neighbours(
    leader: LeaderClient,
    database_url: str,
    local_list: int,
    group: Group,
    neighbours: Neighbours,
    deadline: Deadline,
) -> int:
    """After a copy: the group's other lists' recent rows, as the Leader has them now.

    A copy or repair of list N pauses the stream, and the stream then replays from where it
    paused. A dossier the Leader moved out of N into another list of the group while the copy
    or repair began arrives as an UPDATE; PostgreSQL skips an UPDATE of a row that is not
    here, and it is not (the copy's list was not replicated yet, or the repair removed it as
    extra). Every such move was written after `since` (the caller waited, after reading it,
    for the Leader's transactions then in flight to end and for the stream to apply them), so
    the rows of the other lists written since then are upserted at one snapshot: the UPDATE
    finds its row, and the replay brings it to the present. Returns the rows written."""
    return _at_one_snapshot(
        leader,
        database_url,
        group,
        local_list,
        deadline,
        f"settling the group's other lists after the copy of list {local_list}",
        lambda source, local: _settle_neighbours(source, local, group.id, neighbours),
    )


def _at_one_snapshot(
    leader: LeaderClient,
    database_url: str,
    group: Group,
    local_list: int,
    deadline: Deadline,
    what: str,
    work: Callable[[pg.Connection, pg.Connection], T],
) -> T:
    """`work(source, local)` with the Leader at one snapshot and one local transaction, under
    the command's deadline; committed when it returns, and run again at a new snapshot if
    PostgreSQL ends it as a deadlock's victim (pg.again_after_deadlocks). `what` names the
    step in its errors."""

    def once() -> T:
        source = leader.snapshot_reader(durable_through=group.name)
        try:
            with _writer(database_url, local_list, deadline) as local:
                result = work(source, local)
                local.commit()
            return result
        except psycopg.errors.QueryCanceled:
            raise DeadlineExceeded(f"{what} ran out of time") from None
        except psycopg.errors.DeadlockDetected:
            raise
        except psycopg.Error as exc:
            raise leader.error(exc) if source.broken else _local_error(exc, what) from None
        finally:
            source.close()

    try:
        return pg.again_after_deadlocks(once, deadline, what)
    except psycopg.errors.DeadlockDetected as exc:
        raise _local_error(exc, what) from None


def _settle_neighbours(
    source: pg.Connection, writer: pg.Connection, group_id: int, neighbours: Neighbours
) -> int:
    if not neighbours.lists:
        return 0
    subscriber.write_as_apply(writer)
    written = 0
    for table in TABLES:
        recent = source.execute(
            _query("recent_rows", table=table),
            {"lists": sorted(neighbours.lists), "since": neighbours.since},
        ).fetchall()
        for row in recent:
            remote = int(row["dossier_list_id"])
            _upsert(source, writer, table, remote, neighbours.lists[remote], group_id, row["ids"])
            written += len(row["ids"])
    return written


def _writer(database_url: str, local_list: int, deadline: Deadline) -> pg.Connection:
    return pg.connect(
        database_url,
        what="this Subscriber's database",
        autocommit=False,
        statement_timeout_ms=max(int(deadline.remaining() * 1000), 1),
        application_name=subscriber.copy_application_name(local_list),
    )


def _upsert(
    source: pg.Connection,
    writer: pg.Connection,
    table: str,
    remote: int,
    local: int,
    group_id: int,
    ids: list[uuid.UUID],
) -> None:
    """These rows of Leader list `remote`, staged from the snapshot and upserted into `local`."""
    stage = sql.Identifier(f"stage_{table}")
    columns = schema_skew.copy_columns(source, writer)[table]
    copier.make_stage(writer, stage, table, columns)
    writer.execute(_query("empty_stage", stage=stage))
    copier.pipe(
        source, writer, copier.select_rows(table, columns, remote, local, ids), copier.copy_in(stage, columns)
    )
    writer.execute(copier.upsert(table, columns), {"local": local, "group": group_id})


def _fix(
    source: pg.Connection,
    writer: pg.Connection,
    table: str,
    difference: TableDifference,
    remote_list: int,
    local_list: int,
    group_id: int,
) -> None:
    """Within the caller's transaction: the Leader's rows that are missing or changed here,
    staged and upserted; the rows the Leader does not have, deleted."""
    subscriber.write_as_apply(writer)
    wanted = difference.missing + difference.changed
    if wanted:
        _upsert(source, writer, table, remote_list, local_list, group_id, wanted)
    if difference.extra:
        writer.execute(_query("delete_rows", table=table), {"list": local_list, "ids": difference.extra})

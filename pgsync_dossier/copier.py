"""The orchestrator's copy of one Leader list into its local list (docs/architecture.md,
"How it works", Attach).

Both tables are read at ONE repeatable-read snapshot of the Leader (the second reader imports
the first one's exported snapshot), with the local list id substituted in the SELECT, and
written by binary COPY in replica mode: no per-row trigger, no foreign-key check, as an apply
worker writes. Two paths:
- *direct*: the local list is empty (a fresh attach): both tables stream straight into the
  live tables, in parallel. If some row already exists here (moved in from another list of
  this Subscriber), the unique index says so and the merge path takes over at the same snapshot.
- *merge*: the rows are staged, then upserted in one transaction, and the list's local rows
  that the Leader list no longer has are deleted. Readers never see the list empty, and rows
  already equal are not rewritten.
The caller has paused the group's stream and waited for the Leader's in-flight transactions.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgsync_dossier import faults, pg, schema_skew, subscriber
from pgsync_dossier.catalog import Group
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import DeadlineExceeded, OperationFailed, UsageError
from pgsync_dossier.leader_client import LeaderClient
from pgsync_dossier.schema_skew import TABLES

log = logging.getLogger(__name__)

#: (rows copied so far, rows expected): dossiers and faces together.
Progress = Callable[[int, int], None]

#: The columns this version writes and reads; a copy carries every column the two nodes have
#: in common (schema_skew.common: these, and any a later migration or a DBA added on both).
COLUMNS: dict[str, tuple[str, ...]] = {
    "dossier": (
        "id",
        "dossier_list_id",
        "name",
        "comment",
        "active",
        "created_at",
        "modified_at",
        "row_version",
    ),
    "dossier_face": (
        "id",
        "dossier_id",
        "dossier_list_id",
        "embedding",
        "model",
        "created_at",
        "row_version",
    ),
}
PROGRESS_EVERY_S = 0.25
#: A pipe's batch: psycopg hands libpq a write of up to 128 KiB as it is, a larger one split.
WRITE_BYTES = 64 * 1024
#: How long a copy or an in-place repair may take: `attach` and `repair` default to it, and a
#: sync that chose one gives it this long, not counted against its own --timeout.
COPY_TIMEOUT_S = 3600.0
_SQL = "copier.sql"
#: Rows (dossiers and faces together) of one part of a copy in a group with other lists: the
#: group's stream is paused for one part at a time and applies the other lists' changes
#: between parts. On the 2-core bench machine, parts of 250,000 rows of 2 KB embeddings made
#: them wait 13.6 s at a million dossiers (9.5 to 21 s; 5.2 s for parts of 150,000 at
#: 100,000 dossiers): 150,000 keeps a part under 10 s there (bench/README.md, "a million
#: dossiers").
ROWS_PER_PART = 150_000
#: Overrides ROWS_PER_PART (docs/configuration.md, "Tuning variables": a faster machine may take
#: larger parts).
ROWS_PER_PART_ENV = "PGSYNC_DOSSIER_ROWS_PER_PART"
#: Ids are split into parts by their top 16 bits (uuids are uniform: parts come out even).
PREFIXES = 1 << 16


@dataclass(frozen=True)
class Part:
    """The ids of one part of a copy: those whose top 16 bits lie in [low, high]."""

    low: int
    high: int
    number: int  # 1-based
    of: int

    def bounds(self) -> tuple[uuid.UUID, uuid.UUID]:
        return uuid.UUID(int=self.low << 112), uuid.UUID(int=((self.high + 1) << 112) - 1)


def rows_of(leader: LeaderClient, remote: int) -> int:
    """The rows (dossiers and faces) of a Leader list now: what its copy's parts divide."""
    try:
        with leader.snapshot_reader() as source:
            row = source.execute(pg.query("list_rows", _SQL), {"list": remote}).fetchone()
    except psycopg.Error as exc:
        raise leader.error(exc) from None
    return int(row["dossiers"]) + int(row["faces"]) if row else 0


def has_rows(conn: pg.Connection, local: int) -> bool:
    """Whether the local list has any row (a copy into an empty list goes direct)."""
    row = conn.execute(pg.query("list_has_rows", _SQL), {"list": local}).fetchone()
    return bool(row and row["any"])


def parts(rows: int) -> list[Part]:
    """The parts of a copy of `rows` rows: about ROWS_PER_PART each, one when that is all."""
    text = os.environ.get(ROWS_PER_PART_ENV)
    try:
        per_part = int(text) if text else ROWS_PER_PART
    except ValueError:
        raise UsageError(
            f"{ROWS_PER_PART_ENV}={text!r} is not a whole number: unset it, or give e.g. 150000"
        ) from None
    count = max(1, min(PREFIXES, -(-rows // max(per_part, 1))))
    edges = [PREFIXES * n // count for n in range(count + 1)]
    return [Part(edges[n], edges[n + 1] - 1, n + 1, count) for n in range(count)]


def within(part: Part | None) -> sql.Composable:
    """The SQL condition of a part's ids (a literal: COPY takes no parameters)."""
    if part is None or part.of == 1:
        return sql.SQL("true")
    low, high = part.bounds()
    return sql.SQL("id BETWEEN {} AND {}").format(sql.Literal(low), sql.Literal(high))


@dataclass(frozen=True)
class CopyResult:
    dossiers: int
    faces: int
    path: str  # "direct" or "merge"
    changed: int  # local rows inserted, updated or deleted

    @classmethod
    def of(cls, parts: Sequence[CopyResult]) -> CopyResult:
        """The whole copy, from its parts' results."""
        paths = sorted({part.path for part in parts})
        return cls(
            sum(part.dossiers for part in parts),
            sum(part.faces for part in parts),
            "+".join(paths),
            sum(part.changed for part in parts),
        )


@dataclass(frozen=True)
class _Job:
    """What one copy needs to know; the connections are opened per table."""

    leader: LeaderClient
    database_url: str
    remote: int
    local: int
    group_id: int
    snapshot: str
    deadline: Deadline
    #: the connection that exported the snapshot: it reads one table itself
    source: pg.Connection
    #: per table, the columns both nodes have (schema_skew.common)
    columns: dict[str, list[str]]
    #: the part of the list this copy writes (None: all of it)
    part: Part | None = None


class LeaderSideError(Exception):
    """A failure while reading from the Leader (as opposed to writing here)."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def copy_list(
    leader: LeaderClient,
    database_url: str,
    remote: int,
    local: int,
    group: Group,
    deadline: Deadline,
    progress: Progress | None = None,
    on_expected: Callable[[int], None] | None = None,
    merge: bool | None = None,
    part: Part | None = None,
) -> CopyResult:
    """Copy Leader list `remote` (or one `part` of its ids) into local list `local` (of
    `group`) at one snapshot (a new one if PostgreSQL ends the copy as a deadlock's victim:
    pg.again_after_deadlocks).

    `merge`: None lets the local list decide (direct when it is empty), True forces the merge,
    False the direct path (a later part of a copy whose first part went direct)."""

    def at_one_snapshot(merge: bool | None) -> CopyResult:
        source = leader.snapshot_reader(durable_through=group.name)
        try:
            try:
                snapshot = str(source.execute(pg.query("export_snapshot", _SQL)).fetchone()["s"])  # type: ignore[index]
                counts = source.execute(
                    pg.query("part_rows", _SQL, within=within(part)), {"list": remote}
                ).fetchone()
            except psycopg.Error as exc:
                raise LeaderSideError(exc) from None
            assert counts is not None
            expected = int(counts["dossiers"]) + int(counts["faces"])
            if on_expected:
                on_expected(expected)
            with pg.connect(database_url, what="this Subscriber's database") as monitor:
                try:
                    columns = schema_skew.copy_columns(source, monitor)
                except psycopg.Error as exc:
                    raise LeaderSideError(exc) from None
                job = _Job(
                    leader, database_url, remote, local, group.id, snapshot, deadline, source, columns, part
                )
                if merge is None:
                    merge = has_rows(monitor, local)
                if merge:
                    return _merge(job, monitor, expected, progress)
                try:
                    return _direct(job, monitor, expected, progress)
                except psycopg.errors.UniqueViolation:
                    log.info("list %s: some of its rows are already here; merging instead", local)
            # The direct copy's statements were cancelled, its snapshot with them: merge at a new
            # one (any snapshot taken while the stream is paused will do).
            return at_one_snapshot(True)
        finally:
            source.close()

    try:
        return pg.again_after_deadlocks(lambda: at_one_snapshot(merge), deadline, f"the copy of list {local}")
    except LeaderSideError as exc:
        raise leader.error(exc.cause) from None
    except psycopg.errors.QueryCanceled:
        raise DeadlineExceeded(
            f"the copy of list {local} did not finish within {deadline.seconds:g}s; "
            "run it again with a longer --timeout"
        ) from None
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or pg.first_line(str(exc))
        raise OperationFailed(f"the copy of list {local} failed here: {reason}") from None


def select_rows(
    table: str,
    columns: Sequence[str],
    remote: int,
    local: int,
    ids: list[uuid.UUID] | None = None,
    part: Part | None = None,
) -> sql.Composed:
    """Binary COPY of a Leader list's rows (or of those with these ids), the local list id
    written in place of the Leader's: no per-row trigger has to rewrite it."""
    selected = [
        sql.SQL("{}::integer").format(sql.Literal(local))
        if column == "dossier_list_id"
        else sql.Identifier(column)
        for column in columns
    ]
    chosen: dict[str, sql.Composable] = {
        "columns": sql.SQL(", ").join(selected),
        "table": sql.Identifier("public", table),
        "remote": sql.Literal(remote),
    }
    if ids is None:
        return pg.query("copy_out", _SQL, **chosen, within=within(part))
    return pg.query("copy_out_ids", _SQL, **chosen, ids=sql.Literal(ids))


def copy_in(target: sql.Identifier, columns: Sequence[str]) -> sql.Composed:
    return pg.query("copy_in", _SQL, target=target, columns=_names(columns))


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def make_stage(writer: pg.Connection, stage: sql.Identifier, table: str, columns: Sequence[str]) -> None:
    """A temporary table for the rows a copy stages: the columns copied and nothing else (no NOT
    NULL of a column only this node has, which the staged rows do not carry)."""
    writer.execute(
        pg.query(
            "make_stage", _SQL, stage=stage, columns=_names(columns), table=sql.Identifier("public", table)
        )
    )


def _stage(table: str) -> sql.Identifier:
    return sql.Identifier(f"stage_{table}")


def _reader(job: _Job) -> pg.Connection:
    """A Leader connection inside the copy's snapshot."""
    return job.leader.snapshot_reader(job.snapshot)


def _writer(job: _Job) -> pg.Connection:
    """A Subscriber connection that writes as an apply worker does."""
    conn = pg.connect(
        job.database_url,
        what="this Subscriber's database",
        autocommit=False,
        statement_timeout_ms=0,
        application_name=subscriber.copy_application_name(job.local),
    )
    subscriber.write_as_apply(conn)
    return conn


def pipe(source: pg.Connection, target: pg.Connection, select: sql.Composed, copy_into: sql.Composed) -> int:
    """Stream one binary COPY from the Leader into this database; returns the rows written.
    A COPY TO sends one message per row and libpq reads them one at a time; they are written
    on in batches of up to WRITE_BYTES, one call per batch instead of one per row."""
    with source.cursor() as reader, target.cursor() as writer:
        with writer.copy(copy_into) as into:
            try:
                with reader.copy(select) as out:
                    relay(out, into)
            except psycopg.Error as exc:
                raise LeaderSideError(exc) from None
        return writer.rowcount


def relay(out: psycopg.Copy, into: psycopg.Copy) -> None:
    """Every block of COPY `out`, written to COPY `into` in batches of up to WRITE_BYTES (the
    bench's fair floor relays the same way, so it does no more per row than pgsync)."""
    batch = bytearray()
    while block := out.read():
        batch += block
        if len(batch) >= WRITE_BYTES:
            into.write(batch)
            batch = bytearray()
    into.write(batch)


class _Watch:
    """Runs a copy's pipes: reports progress from pg_stat_progress_copy (no recount of the
    table), and cancels every statement of the copy when one pipe fails or the deadline passes."""

    def __init__(self, job: _Job, monitor: pg.Connection, expected: int, progress: Progress | None) -> None:
        self.job, self.monitor, self.expected, self.progress = job, monitor, expected, progress

    def run(
        self, pipes: Sequence[Callable[[], Any]], writers: list[pg.Connection], readers: list[pg.Connection]
    ) -> list[Any]:
        pids = [conn.info.backend_pid for conn in writers]
        first_failure: list[BaseException] = []
        lock = threading.Lock()
        done = threading.Event()
        futures: list[Future[Any]] = []

        def finished(future: Future[Any]) -> None:
            with lock:
                if future.exception() is not None and not first_failure:
                    first_failure.append(future.exception())  # type: ignore[arg-type]
                    self._cancel(readers, writers)
                if all(f.done() for f in futures):
                    done.set()

        with ThreadPoolExecutor(max_workers=len(pipes), thread_name_prefix="pgsync-copy") as pool:
            with lock:
                futures.extend(pool.submit(pipe) for pipe in pipes)
            for future in futures:
                future.add_done_callback(finished)
            while not done.wait(PROGRESS_EVERY_S):
                if self.job.deadline.expired():
                    self._cancel(readers, writers)
                    done.wait()
                    raise psycopg.errors.QueryCanceled("the copy's deadline passed")
                if len(writers) > 1 and self._blocked_by_each_other(pids):
                    self._cancel(readers, writers)
                    done.wait()
                    raise psycopg.errors.DeadlockDetected(
                        "deadlock detected: another transaction waits on one of the copy's writers "
                        "and blocks the other"
                    )
                if self.progress:
                    row = self.monitor.execute(pg.query("rows_written", _SQL), {"pids": pids}).fetchone()
                    self.progress(min(int(row["n"]), self.expected), self.expected)  # type: ignore[index]
        if first_failure:
            raise first_failure[0]
        if self.progress:
            self.progress(self.expected, self.expected)
        return [future.result() for future in futures]

    def _blocked_by_each_other(self, pids: list[int]) -> bool:
        """Whether a writer waits, through other transactions, on another writer of the copy.

        The writers commit together once every pipe is done, so a writer that finished its
        table waits on the client, where PostgreSQL's deadlock detector cannot see it: a
        stream of another group that waits on its rows while holding rows the other writer
        needs would stall both for the whole deadline."""
        row = self.monitor.execute(
            pg.query("copy_blocked_by_itself", "copier.sql"), {"writers": pids}
        ).fetchone()
        return bool(row and row["blocked"])

    @staticmethod
    def _cancel(readers: list[pg.Connection], writers: list[pg.Connection]) -> None:
        for conn in (*readers, *writers):
            try:
                conn.cancel_safe(timeout=5)
            except psycopg.Error as exc:  # its server is gone: nothing left to cancel there
                log.debug("could not cancel a copy statement: %s", pg.first_line(str(exc)))


def _direct(job: _Job, monitor: pg.Connection, expected: int, progress: Progress | None) -> CopyResult:
    second = _reader(job)
    readers = [job.source, second]
    writers: list[pg.Connection] = []
    try:
        writers = [_writer(job) for _table in TABLES]
        pipes = [
            functools.partial(
                pipe,
                reader,
                writer,
                select_rows(table, job.columns[table], job.remote, job.local, part=job.part),
                copy_in(sql.Identifier("public", table), job.columns[table]),
            )
            for table, reader, writer in zip(TABLES, readers, writers, strict=True)
        ]
        if job.part is not None and job.part.number > 1:
            for table, writer in zip(TABLES, writers, strict=True):
                target = sql.Identifier("public", table)
                writer.execute(
                    pg.query("clear_part", _SQL, target=target, within=within(job.part)), {"local": job.local}
                )
        dossiers, faces = _Watch(job, monitor, expected, progress).run(pipes, writers, readers)
        writers[0].commit()
        faults.point("copy.first_table")
        writers[1].commit()
        return CopyResult(dossiers, faces, "direct", dossiers + faces)
    finally:
        for conn in (second, *writers):
            conn.close()


def _merge(job: _Job, monitor: pg.Connection, expected: int, progress: Progress | None) -> CopyResult:
    reader = job.source
    writer = _writer(job)
    try:
        for table in TABLES:
            make_stage(writer, _stage(table), table, job.columns[table])

        def stage() -> tuple[int, int]:
            dossiers, faces = (
                pipe(
                    reader,
                    writer,
                    select_rows(table, job.columns[table], job.remote, job.local, part=job.part),
                    copy_in(_stage(table), job.columns[table]),
                )
                for table in TABLES
            )
            return dossiers, faces

        ((dossiers, faces),) = _Watch(job, monitor, expected, progress).run([stage], [writer], [reader])
        changed = 0
        for table in TABLES:
            writer.execute(pg.query("analyze_stage", _SQL, stage=_stage(table)))
            changed += writer.execute(
                upsert(table, job.columns[table]), {"local": job.local, "group": job.group_id}
            ).rowcount
            changed += writer.execute(_delete_missing(table, job.part), {"local": job.local}).rowcount
        writer.commit()
        return CopyResult(dossiers, faces, "merge", changed)
    finally:
        writer.close()


def upsert(table: str, columns: Sequence[str]) -> sql.Composed:
    """Insert the staged rows, by apply_change's rule (sql/copier.sql, upsert)."""
    values = [column for column in columns if column != "id"]
    return pg.query(
        "upsert",
        _SQL,
        target=sql.Identifier("public", table),
        stage=_stage(table),
        columns=_names(columns),
        values=_names(values),
        excluded=sql.SQL(", ").join(sql.Identifier("excluded", column) for column in values),
        current=sql.SQL(", ").join(sql.Identifier("t", column) for column in values),
    )


def _delete_missing(table: str, part: Part | None) -> sql.Composed:
    """The list's local rows (of the part) that the Leader list does not have (at the copy's
    snapshot)."""
    return pg.query(
        "delete_missing",
        _SQL,
        target=sql.Identifier("public", table),
        stage=_stage(table),
        within=within(part),
    )

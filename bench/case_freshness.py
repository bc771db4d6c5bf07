"""freshness: how stale a continuous replica is while its Leader list is written.

Two empty Leader lists are written at the same rate, in the same transactions: one is a
pgsync replica (continuous, its own group), the other a hand-made native subscription
(binary, row-filtered on the list) into the Subscriber's "native" database, running alongside.
A writer commits a batch of dossiers into each list every 10 ms; the ids carry the batch
number in their top 64 bits, so a reader on each side learns which batch it sees from one
index probe (max id of the list). A batch's staleness is the time from its commit returning
on the Leader to the first poll (every 2 ms) that sees it. Each repetition runs the writer
for the whole duration; the percentiles are over every batch of every repetition.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid
from typing import Any

from psycopg import sql

from bench.sites import Sites
from bench.stats import table

BATCH_EVERY_S = 0.010
POLL_EVERY_S = 0.002
SIDES = ("pgsync (continuous)", "native pub/sub")


def _writer(
    sites: Sites, lists: tuple[int, int], rate: int, seconds: float, first_batch: int
) -> dict[int, float]:
    """Commit one batch into each list every BATCH_EVERY_S; the commit time of each batch."""
    per_batch = max(1, round(rate * BATCH_EVERY_S))
    committed: dict[int, float] = {}
    with sites.connect(sites.leader) as conn:
        start = time.perf_counter()
        batch = first_batch
        while time.perf_counter() - start < seconds:
            due = start + (batch - first_batch) * BATCH_EVERY_S
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            ids = [uuid.UUID(int=(batch << 64) | n) for n in range(2 * per_batch)]
            with conn.transaction():
                for side, list_id in enumerate(lists):
                    conn.execute(
                        "INSERT INTO dossier (id, dossier_list_id, name) "
                        "SELECT i, %s, 'fresh ' || i FROM unnest(%s::uuid[]) AS i",
                        [list_id, ids[side * per_batch : (side + 1) * per_batch]],
                    )
            committed[batch] = time.perf_counter()
            batch += 1
    return committed


def _reader(sites: Sites, dbname: str, list_id: int, seen: dict[int, float], stop: threading.Event) -> None:
    """The time each batch was first seen (every earlier batch is visible with it: commit order).
    A failure is recorded under batch -1 and ends the wait at once."""
    try:
        _read(sites, dbname, list_id, seen, stop)
    except Exception as exc:  # reported by the main thread
        seen[-1] = -1.0
        stop.set()
        print(f"freshness reader on {dbname} failed: {exc}", file=sys.stderr)


def _read(sites: Sites, dbname: str, list_id: int, seen: dict[int, float], stop: threading.Event) -> None:
    highest = -1
    with sites.connect(sites.subscriber, dbname) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT id AS m FROM dossier WHERE dossier_list_id = %s ORDER BY id DESC LIMIT 1", [list_id]
            ).fetchone()
            now = time.perf_counter()
            if row and row["m"] is not None:
                batch = row["m"].int >> 64
                for b in range(highest + 1, batch + 1):
                    seen[b] = now
                highest = max(highest, batch)
            time.sleep(POLL_EVERY_S)


def _native_subscription(sites: Sites, remote: int) -> str:
    name = f"bench_fresh_{remote}"
    sites.execute(
        sites.subscriber,
        "INSERT INTO dossier_list (id, name) VALUES (%s, 'fresh native') ON CONFLICT DO NOTHING",
        [remote],
        dbname="native",
    )
    sites.execute(
        sites.leader,
        sql.SQL("CREATE PUBLICATION {} FOR TABLE dossier WHERE (dossier_list_id = {l})").format(
            sql.Identifier(name), l=sql.Literal(remote)
        ),
    )
    sites.execute(
        sites.subscriber,
        sql.SQL(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (binary = true, copy_data = false)"
        ).format(sql.Identifier(name), sql.Literal(sites.url(sites.leader)), sql.Identifier(name)),
        dbname="native",
    )
    return name


def _drop_native(sites: Sites, name: str) -> None:
    sites.execute(
        sites.subscriber, sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)), dbname="native"
    )
    sites.execute(sites.leader, sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(sites: Sites, rate: int, seconds: float, reps: int) -> dict[str, Any]:
    ours = sites.make_list(sites.leader, "fresh pgsync")
    theirs = sites.make_list(sites.leader, "fresh native")
    local = sites.make_list(sites.subscriber, "fresh replica")
    sites.attach(ours, local)
    native = _native_subscription(sites, theirs)
    staleness: dict[str, list[float]] = {side: [] for side in SIDES}
    achieved: list[float] = []
    batch = 0
    try:
        for _ in range(reps):
            sites.checkpoint()
            stop = threading.Event()
            seen: dict[str, dict[int, float]] = {side: {} for side in SIDES}
            readers = [
                threading.Thread(target=_reader, args=(sites, "dossiers", local, seen[SIDES[0]], stop)),
                threading.Thread(target=_reader, args=(sites, "native", theirs, seen[SIDES[1]], stop)),
            ]
            for reader in readers:
                reader.start()
            try:
                committed = _writer(sites, (ours, theirs), rate, seconds, batch)
                last = max(committed)
                deadline = time.perf_counter() + 60
                while (
                    time.perf_counter() < deadline
                    and not stop.is_set()
                    and not all(last in s for s in seen.values())
                ):
                    time.sleep(0.05)
            finally:
                stop.set()
                for reader in readers:
                    reader.join()
            missing = [side for side in SIDES if last not in seen[side]]
            if missing:
                raise RuntimeError(f"{', '.join(missing)}: the last batch never arrived")
            span = max(committed.values()) - min(committed.values())
            achieved.append(len(committed) * max(1, round(rate * BATCH_EVERY_S)) / max(span, 1e-9))
            for side in SIDES:
                staleness[side].extend(max(0.0, seen[side][b] - t) for b, t in committed.items())
            batch = last + 1
    finally:
        _drop_native(sites, native)
        sites.ok("subscriber", "detach", str(local), "--purge")  # the next cases start clean
    results: dict[str, Any] = {"rate_per_list": rate, "seconds": seconds, "reps": reps, "sides": {}}
    lines = []
    for side in SIDES:
        values = staleness[side]
        figures = {
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * _percentile(values, 0.99),
            "max_ms": 1000 * max(values),
            "batches": len(values),
        }
        results["sides"][side] = figures
        lines.append(
            [
                side,
                f"{figures['p50_ms']:.1f} ms",
                f"{figures['p99_ms']:.1f} ms",
                f"{figures['max_ms']:.0f} ms",
            ]
        )
    ratio = results["sides"][SIDES[0]]["p99_ms"] / max(results["sides"][SIDES[1]]["p99_ms"], 1e-9)
    results["pgsync_p99_over_native_p99"] = ratio
    print(
        f"(dossier inserts at {statistics.median(achieved):.0f}/s into each list, {seconds:g} s x {reps}; "
        f"pgsync p99 / native p99 = {ratio:.2f}x)"
    )
    print(table(["replica", "p50 staleness", "p99", "max"], lines))
    return results

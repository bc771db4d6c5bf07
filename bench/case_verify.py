"""verify: what a scheduled verification of a replica costs, and what it does to the stream.

A Leader list of N dossiers + N faces (2 KB random embeddings, bench/sites.py `fill`) is
attached to a continuous replica (untimed, then vacuumed as autovacuum would). Two parts:

1. Cost, on a quiet Leader, in rotated order, each a whole CLI process:
   - fresh attach (the baseline): the replica detached with --purge and the tables vacuumed
     (untimed), then `attach` again into the same local list, as a user runs it (stderr on a
     terminal);
   - verify: `verify T --json`, as a timer runs it: the group's sync barrier, then the
     chunk-digest comparison of both sides (compare.py). It must exit 0 and say `match`.
   Reported: verify / fresh attach.
2. The stream's extra lag during a verification. A writer commits a batch into the same Leader
   list every 10 ms (new dossiers, each with a face, and as many comment updates of existing
   dossiers); their ids carry the batch number, so a probe on the Subscriber learns which
   batch the replica holds from one index probe every 2 ms. A batch's staleness is the time
   from its commit returning on the Leader to the first probe that sees it (as in the
   freshness case). In rotated order, each repetition has:
   - stream alone: the writer runs with nothing else; the batches committed in a span as long
     as the quiet verify's median (after 0.5 s of warm-up) are counted;
   - stream during verify: the writer runs and `verify T --json` runs VERIFIES_PER_REP times
     back to back; the batches committed while a verify process ran are counted.
   Reported: p50/p99/max staleness of each, their difference and ratio, the writer's achieved
   rate in each, verify's own time under that load and what it concluded (a list written
   while it is compared may be reported as differing: verify compares again after another
   barrier, up to 3 times, and the bench counts how often it still reported a difference).
   After the writer stops, the replica must equal the Leader list.

What the lag part measures: commit-to-visible time of rows written while verify runs, seen
by a reader on the Subscriber; not status's heartbeat lag (`lag_seconds`), which moves only
with heartbeats and would not resolve a sub-second verify.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
import uuid
from typing import Any

from bench import pause
from bench.sites import EMBEDDING_BYTES, FACE_MODEL, Sites, Timed
from bench.stats import Series, ratio, rotations, table

METHODS = ("fresh attach (CLI)", "verify (CLI)")
LAG_CONDITIONS = ("stream alone", "stream during verify")
BATCH_EVERY_S = 0.010
POLL_EVERY_S = 0.002
WARM_UP_S = 0.5
VERIFIES_PER_REP = 3
#: The writer's rows sort after every uuid4 `fill` makes (bar one in 4 billion starting ffffffff):
#: the probe reads the highest id of the list above this prefix.
PREFIX = 0xFFFFFFFF << 96
FLOOR_ID = uuid.UUID(int=PREFIX)


def _verify(sites: Sites, local: int) -> tuple[Timed, dict[str, Any] | None]:
    """`verify T --json`: its process and its row (None if it printed none)."""
    timed = sites.cli("subscriber", "verify", str(local), "--json")
    if timed.exit_code not in (0, 1):
        raise RuntimeError(f"verify failed ({timed.exit_code}): {timed.stderr.strip()[-500:]}")
    try:
        rows = json.loads(timed.stdout)
    except ValueError:
        rows = []
    row = rows[0] if isinstance(rows, list) and rows else None
    return timed, row


def _writer(
    sites: Sites,
    remote: int,
    existing: list[uuid.UUID],
    per_batch: int,
    stop: threading.Event,
    first_batch: int,
    committed: dict[int, float],
    failed: list[BaseException],
) -> None:
    """Commit a batch every BATCH_EVERY_S until `stop`: per_batch new dossiers with a face each,
    and per_batch comment updates of existing dossiers. The commit time of each batch."""
    rng = random.Random(first_batch)  # noqa: S311 - which rows to update, not a secret
    try:
        with sites.connect(sites.leader) as conn:
            start = time.perf_counter()
            batch = first_batch
            while not stop.is_set():
                due = start + (batch - first_batch) * BATCH_EVERY_S
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                ids = [uuid.UUID(int=PREFIX | (batch << 16) | n) for n in range(per_batch)]
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO dossier (id, dossier_list_id, name, comment) "
                        "SELECT i, %s, 'written ' || i, 'during the verify bench' "
                        "FROM unnest(%s::uuid[]) AS i",
                        [remote, ids],
                    )
                    conn.execute(
                        "INSERT INTO dossier_face (id, dossier_id, dossier_list_id, embedding, model) "
                        "SELECT gen_random_uuid(), d, %s, e, %s "
                        "FROM unnest(%s::uuid[], %s::bytea[]) AS u(d, e)",
                        [remote, FACE_MODEL, ids, [os.urandom(EMBEDDING_BYTES) for _ in ids]],
                    )
                    conn.execute(
                        "UPDATE dossier SET comment = 'updated in batch ' || %s::text WHERE id = ANY (%s)",
                        [batch, rng.sample(existing, per_batch)],
                    )
                committed[batch] = time.perf_counter()
                batch += 1
    except BaseException as exc:  # reported by the caller
        failed.append(exc)


def _probe(
    sites: Sites, local: int, seen: dict[int, float], stop: threading.Event, failed: list[BaseException]
) -> None:
    """The time each batch was first seen on the Subscriber (commit order: every earlier batch
    is visible with it)."""
    highest = -1
    try:
        with sites.connect(sites.subscriber) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT id AS m FROM dossier WHERE dossier_list_id = %s AND id >= %s "
                    "ORDER BY id DESC LIMIT 1",
                    [local, FLOOR_ID],
                ).fetchone()
                now = time.perf_counter()
                if row is not None:
                    batch = (row["m"].int & ((1 << 96) - 1)) >> 16
                    for b in range(highest + 1, batch + 1):
                        seen.setdefault(b, now)
                    highest = max(highest, batch)
                time.sleep(POLL_EVERY_S)
    except BaseException as exc:  # reported by the caller
        failed.append(exc)


def _lag_round(
    sites: Sites,
    remote: int,
    local: int,
    existing: list[uuid.UUID],
    per_batch: int,
    condition: str,
    span_s: float,
    first_batch: int,
) -> dict[str, Any]:
    """One repetition of one condition: the staleness of the batches committed in its windows."""
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    failed: list[BaseException] = []
    stop_writer, stop_probe = threading.Event(), threading.Event()
    probe = threading.Thread(target=_probe, args=(sites, local, seen, stop_probe, failed))
    writer = threading.Thread(
        target=_writer,
        args=(sites, remote, existing, per_batch, stop_writer, first_batch, committed, failed),
    )
    probe.start()
    writer.start()
    windows: list[tuple[float, float]] = []
    verifies: list[dict[str, Any]] = []
    try:
        time.sleep(WARM_UP_S)
        if condition == "stream alone":
            start = time.perf_counter()
            time.sleep(span_s)
            windows.append((start, time.perf_counter()))
        else:
            for _ in range(VERIFIES_PER_REP):
                start = time.perf_counter()
                timed, row = _verify(sites, local)
                windows.append((start, time.perf_counter()))
                verifies.append(
                    {
                        "seconds": timed.seconds,
                        "exit_code": timed.exit_code,
                        "match": row.get("match") if row else None,
                        "differences": (
                            {k: row.get(k) for k in ("missing", "extra", "changed")} if row else None
                        ),
                        "error": row.get("error") if row else timed.stderr.strip()[-300:],
                    }
                )
        time.sleep(WARM_UP_S)
    finally:
        stop_writer.set()
        writer.join()
        last = max(committed, default=first_batch - 1)
        deadline = time.perf_counter() + 60
        while not failed and last >= first_batch and last not in seen and time.perf_counter() < deadline:
            time.sleep(0.02)
        stop_probe.set()
        probe.join()
    if failed:
        raise RuntimeError(f"verify bench, {condition}: {failed[0]!r}")
    if last >= first_batch and last not in seen:
        raise RuntimeError(f"verify bench, {condition}: the last batch never reached the replica")
    inside = [b for b, t in committed.items() if any(s <= t <= e for s, e in windows)]
    staleness = [max(0.0, seen[b] - committed[b]) for b in inside]
    spent = sum(e - s for s, e in windows)
    return {
        "staleness": staleness,
        "rate": len(inside) * per_batch / max(spent, 1e-9),
        "verifies": verifies,
        "last_batch": last,
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(sites: Sites, dossiers: int, reps: int, rate: int = 200, at_scale: bool = False) -> dict[str, Any]:
    """With `at_scale` (`./run bench --size`): the cost part only, each process's peak RSS
    kept, each verify beside the pause neighbour (bench/pause.py)."""
    remote, local, expected = sites.live_replica(f"verify {dossiers}", dossiers)

    # -- 1. cost: verify against a fresh attach, quiet Leader --------------------------------
    series = {method: Series(method) for method in METHODS}
    rss = {method: Series(f"{method} peak RSS", "MB") for method in METHODS}
    paused = Series("the other lists' longest wait during a verify", "s")
    for order in rotations(METHODS, reps):
        for method in order:
            if method == "verify (CLI)":
                sites.checkpoint()
                if at_scale:
                    with pause.watched(sites) as waited:
                        timed, row = _verify(sites, local)
                    paused.values.append(waited.seconds)
                else:
                    timed, row = _verify(sites, local)
                if timed.exit_code != 0 or not row or row.get("match") is not True:
                    raise RuntimeError(
                        f"verify of an equal replica did not say so: {timed.stdout} {timed.stderr}"
                    )
                series[method].values.append(timed.seconds)
            else:
                series[method].values.append(sites.attach_again(remote, local))
            rss[method].values.append(sites.last_peak_rss_mb)
            if sites.content(sites.subscriber, local) != expected:
                raise RuntimeError(f"{method}: the replica differs from its Leader list afterwards")
    attach, verify = series["fresh attach (CLI)"], series["verify (CLI)"]
    over_attach = ratio(verify, attach)
    cost = table(
        ["method", "median (min-max)", "/ fresh attach", "peak RSS"],
        [
            [attach.name, attach.cell(), "1.00x", rss[attach.name].cell()],
            [
                verify.name,
                verify.cell(),
                f"{over_attach:.2f}x" if over_attach is not None else "-",
                rss[verify.name].cell(),
            ],
        ],
    )
    if at_scale:
        sites.ok("subscriber", "detach", str(local), "--purge")  # the next cases start clean
        print(
            f"(a continuous replica of {dossiers:,} dossiers, quiet Leader; the group's other lists "
            f"waited {paused.cell()} during a verify)"
        )
        print(cost)
        return {
            "dossiers": dossiers,
            "reps": reps,
            "series": [s.as_dict() for s in series.values()],
            "verify_over_fresh_attach": over_attach,
            "peak_rss_mb": {method: r.as_dict() for method, r in rss.items()},
            "other_lists_wait_s": paused.as_dict(),
        }

    # -- 2. the stream's lag with and without a verify running -------------------------------
    per_batch = max(1, round(rate * BATCH_EVERY_S))
    existing = [
        r["id"]
        for r in sites.execute(sites.leader, "SELECT id FROM dossier WHERE dossier_list_id = %s", [remote])
    ]
    span_s = verify.median
    rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in LAG_CONDITIONS}
    batch = 0
    for order in rotations(LAG_CONDITIONS, reps):
        for condition in order:
            sites.checkpoint()
            span = span_s * (VERIFIES_PER_REP if condition == "stream alone" else 1)
            done = _lag_round(sites, remote, local, existing, per_batch, condition, span, batch)
            rounds[condition].append(done)
            batch = done["last_batch"] + 1
    deadline = time.perf_counter() + 60
    while sites.content(sites.subscriber, local) != sites.content(sites.leader, remote):
        if time.perf_counter() > deadline:
            raise RuntimeError("after the lag part, the replica differs from its Leader list")
        time.sleep(0.2)
    sites.ok("subscriber", "detach", str(local), "--purge")  # the next cases start clean

    lag: dict[str, Any] = {}
    for condition in LAG_CONDITIONS:
        values = [v for r in rounds[condition] for v in r["staleness"]]
        if not values:
            raise RuntimeError(f"verify bench, {condition}: no batch was committed in its windows")
        lag[condition] = {
            "batches": len(values),
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * _percentile(values, 0.99),
            "max_ms": 1000 * max(values),
            "achieved_dossiers_per_s": statistics.median(r["rate"] for r in rounds[condition]),
        }
    alone, during = lag["stream alone"], lag["stream during verify"]
    loaded = [v for r in rounds["stream during verify"] for v in r["verifies"]]
    loaded_series = Series("verify (CLI) under the writer", values=[v["seconds"] for v in loaded])
    differed = sum(1 for v in loaded if v["match"] is not True)
    results: dict[str, Any] = {
        "dossiers": dossiers,
        "reps": reps,
        "series": [s.as_dict() for s in series.values()],
        "verify_over_fresh_attach": over_attach,
        "lag": {
            "writer": {
                "batch_every_s": BATCH_EVERY_S,
                "dossiers_inserted_per_batch": per_batch,
                "faces_inserted_per_batch": per_batch,
                "dossiers_updated_per_batch": per_batch,
            },
            "conditions": lag,
            "p50_extra_ms": during["p50_ms"] - alone["p50_ms"],
            "p99_extra_ms": during["p99_ms"] - alone["p99_ms"],
            "p99_during_over_alone": during["p99_ms"] / max(alone["p99_ms"], 1e-9),
            "verify_under_writer": loaded_series.as_dict(),
            "verify_under_writer_over_quiet": ratio(loaded_series, verify),
            "verifies_under_writer": loaded,
            "verifies_under_writer_reporting_a_difference": differed,
        },
    }
    print(f"(a continuous replica of {dossiers:,} dossiers + {dossiers:,} faces, quiet Leader)")
    print(cost)
    print(
        f"(writer: a batch every {1000 * BATCH_EVERY_S:.0f} ms of {per_batch} new dossiers + faces and "
        f"{per_batch} updates; {VERIFIES_PER_REP} verifies back to back per repetition)"
    )
    print(
        table(
            ["stream", "batches", "achieved inserts/s", "p50 staleness", "p99", "max"],
            [
                [
                    c,
                    str(lag[c]["batches"]),
                    f"{lag[c]['achieved_dossiers_per_s']:.0f}",
                    f"{lag[c]['p50_ms']:.1f} ms",
                    f"{lag[c]['p99_ms']:.1f} ms",
                    f"{lag[c]['max_ms']:.0f} ms",
                ]
                for c in LAG_CONDITIONS
            ],
        )
    )
    figures = results["lag"]
    under = figures["verify_under_writer_over_quiet"]
    print(
        f"(during verify: p50 {figures['p50_extra_ms']:+.1f} ms, p99 {figures['p99_extra_ms']:+.1f} ms, "
        f"p99 {figures['p99_during_over_alone']:.2f}x alone; verify under the writer "
        f"{loaded_series.cell()}, {under or 0:.2f}x quiet; {differed} of {len(loaded)} reported a difference)"
    )
    return results

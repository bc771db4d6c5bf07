"""leader: the Leader's walsender CPU and the lag, with 1, 8 and 32 replicated lists.

The same write load runs in every case: a writer updates dossiers spread over all the
Leader's lists (replicated or not) at a fixed rate, for a fixed time. Every slot decodes the
Leader's whole WAL, so what matters is the number of slots:
- pgsync: the lists share one group, so one slot and one walsender whatever their number;
- native, one subscription per list (version 1's shape): one walsender per list.
CPU is read from /proc for every walsender that serves the Subscriber during the load.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

from psycopg import sql

from bench.sites import Sites
from bench.stats import Series, rotations, table
from pgsync_dossier import config as config_module
from pgsync_dossier import links
from pgsync_dossier.clusters import LocalCluster

METHODS = ("pgsync (one group)", "native (one subscription per list)")
TOTAL_LISTS = 32
ROWS_PER_LIST = 200
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds of these processes so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def walsenders(sites: Sites, cluster: LocalCluster) -> list[int]:
    """The pids of the cluster's walsenders now."""
    return [
        int(row["pid"])
        for row in sites.execute(cluster, "SELECT pid FROM pg_stat_replication", dbname="postgres")
    ]


def slot_lag_bytes(sites: Sites) -> int:
    """The Leader's largest slot lag now: WAL written since a slot's consumer last confirmed."""
    row = sites.execute(
        sites.leader,
        "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint AS lag "
        "FROM pg_replication_slots",
    )
    return int(row[0]["lag"])


def _load(sites: Sites, lists: list[int], rate: int, seconds: float, stop: threading.Event) -> None:
    """`rate` single-row updates per second, spread over every list, for `seconds`."""
    with sites.connect(sites.leader) as conn:
        ids = [
            row["id"]
            for row in conn.execute("SELECT id FROM dossier WHERE dossier_list_id = ANY (%s)", [lists])
        ]
        rng = random.Random(7)  # noqa: S311 - which rows a load updates, not a secret
        start = time.perf_counter()
        done = 0
        while not stop.is_set() and time.perf_counter() - start < seconds:
            conn.execute("UPDATE dossier SET comment = %s WHERE id = %s", [f"c{done}", rng.choice(ids)])
            done += 1
            ahead = done / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)


def _replicate(sites: Sites, method: str, lists: list[int]) -> list[int]:
    """Replicate these Leader lists; returns what to undo."""
    if method.startswith("pgsync"):
        cfg = config_module.load(sites.configs["subscriber"])
        made = []
        for remote in lists:
            local = sites.make_list(sites.subscriber, f"leader case {remote} {time.monotonic_ns()}")
            links.attach(cfg, links.AttachRequest(remote, sites.leader_url, local))
            made.append(local)
        return made
    for remote in lists:
        name = f"bench_list_{remote}"
        sites.publish_list(name, remote)
        sites.execute(
            sites.subscriber,
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false)").format(
                sql.Identifier(name), sql.Literal(sites.url(sites.leader)), sql.Identifier(name)
            ),
            dbname="native",
        )
    return lists


def _unreplicate(sites: Sites, method: str, made: list[int]) -> None:
    if method.startswith("pgsync"):
        for local in made:
            sites.ok("subscriber", "detach", str(local), "--purge")
        return
    for remote in made:
        name = f"bench_list_{remote}"
        sites.execute(
            sites.subscriber, sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)), dbname="native"
        )
        sites.execute(sites.leader, sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))


def run(sites: Sites, counts: list[int], reps: int, seconds: float, rate: int) -> dict[str, Any]:
    lists = []
    for n in range(TOTAL_LISTS):
        remote = sites.make_list(sites.leader, f"leader load {n}")
        sites.fill(remote, ROWS_PER_LIST)
        lists.append(remote)
    results: dict[str, Any] = {"rate_updates_per_s": rate, "seconds": seconds, "counts": {}}
    lines = []
    base: Series | None = None
    for count in counts:
        cpu = {method: Series(method, "cpu-s") for method in METHODS}
        lag = {method: Series(method, "MB") for method in METHODS}
        senders = {method: 0 for method in METHODS}
        for order in rotations(METHODS, reps):
            for method in order:
                made = _replicate(sites, method, lists[:count])
                time.sleep(1.0)  # the walsenders start
                sites.checkpoint()
                pids = walsenders(sites, sites.leader)
                senders[method] = len(pids)
                before = cpu_seconds(pids)
                stop = threading.Event()
                writer = threading.Thread(target=_load, args=(sites, lists, rate, seconds, stop))
                writer.start()
                worst = 0
                while writer.is_alive():
                    worst = max(worst, slot_lag_bytes(sites))
                    time.sleep(0.25)
                cpu[method].values.append(cpu_seconds(pids) - before)
                lag[method].values.append(worst / 1e6)
                _unreplicate(sites, method, made)
        base = base or cpu[METHODS[0]]  # pgsync with the fewest lists
        results["counts"][count] = {
            method: {
                "cpu": cpu[method].as_dict(),
                "max_lag_mb": lag[method].as_dict(),
                "walsenders": senders[method],
            }
            for method in METHODS
        }
        for method in METHODS:
            lines.append(
                [
                    str(count),
                    method,
                    str(senders[method]),
                    cpu[method].cell(),
                    f"{cpu[method].median / base.median:.2f}x" if base.median else "-",
                    lag[method].cell(),
                ]
            )
    print(
        f"write load: {rate} dossier updates/s over {TOTAL_LISTS} Leader lists for {seconds:g}s; "
        "CPU is the walsenders' user+system time during the load"
    )
    print(
        table(
            ["lists", "method", "walsenders", "walsender CPU", f"/ pgsync, {counts[0]} list", "max slot lag"],
            lines,
        )
    )
    return results

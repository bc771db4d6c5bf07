"""fleet: many sites on one Leader, connected directly or through 1 or 2 relays (docs/relays.md),
or directly with the unpublished load moved to another database of the Leader's cluster.

The Leader's database takes a steady load the sites do not replicate (face-detection events of
~1 KB, inserted in batches, in a table of its own) and updates one probe dossier of the watched
list 20 times a second, its comment the Leader's clock. Each site is a database on the
Subscriber cluster, set up and attached as a DBA does (in process: `setup`, `attach`); a relay
is a database of a third cluster ("relays", whose walsenders are counted apart), role relay,
holding the watched list under the Leader's id; with 2 relays the sites are split between them.
- The Leader's walsender CPU: user+system time (from /proc) of every walsender of the Leader
  during the window, in cores. The relays' walsenders are reported apart.
- Freshness at the last hop: every 0.25 s, up to 8 sites read the probe's comment; its age is
  the staleness (it includes up to one probe interval, 50 ms, alike for every topology).
- Lag under load: the largest slot lag on the Leader during the window.
Each (topology, sites) run builds its sites anew (rotated order, fresh databases).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from psycopg import sql

from bench.case_leader import cpu_seconds, slot_lag_bytes, walsenders
from bench.sites import FACE_MODEL, Sites, make_cluster
from bench.stats import Series, rotations, table
from pgsync_dossier import config as config_module
from pgsync_dossier import links, migrations, node
from pgsync_dossier.clusters import LocalCluster

#: "events elsewhere": direct, with the events in another database of the Leader's cluster,
#: whose WAL a walsender reads but drops at once (the guidance that needs no relay).
TOPOLOGIES = ("direct", "1 relay", "2 relays", "events elsewhere")
#: The Leader cluster's database the "events elsewhere" topology writes its events into.
EVENTS_DATABASE = "events"
EVENT_BYTES = 1024
EVENT_BATCH = 20  # events per transaction: the lab measured batched writers (design section 7)
PROBE_EVERY_S = 0.05
SAMPLE_EVERY_S = 0.25
SAMPLED_SITES = 8
WARM_UP_S = 3.0
TEMPLATE = "fleet_template"
WATCHED_DOSSIERS = 1000


def _events(sites: Sites, dbname: str, rate: int, stop: threading.Event) -> None:
    """`rate` unpublished events a second, EVENT_BATCH per transaction, until stopped."""
    payload = os.urandom(EVENT_BYTES)
    every = EVENT_BATCH / rate
    with sites.connect(sites.leader, dbname) as conn:
        start, done = time.perf_counter(), 0
        while not stop.is_set():
            conn.execute(
                "INSERT INTO fleet_event (payload) SELECT %s FROM generate_series(1, %s)",
                [payload, EVENT_BATCH],
            )
            done += 1
            ahead = start + done * every - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def _probe(sites: Sites, probe: uuid.UUID, stop: threading.Event) -> None:
    with sites.connect(sites.leader) as conn:
        while not stop.is_set():
            conn.execute(
                "UPDATE dossier SET comment = extract(epoch FROM clock_timestamp())::text WHERE id = %s",
                [probe],
            )
            time.sleep(PROBE_EVERY_S)


def _sample(
    sites: Sites, dbnames: list[str], probe: uuid.UUID, ages: list[float], stop: threading.Event
) -> None:
    conns = [sites.connect(sites.subscriber, db) for db in dbnames]
    try:
        while not stop.is_set():
            for conn in conns:
                row = conn.execute("SELECT comment FROM dossier WHERE id = %s", [probe]).fetchone()
                if row and row["comment"].replace(".", "", 1).isdigit():
                    ages.append(time.time() - float(row["comment"]))
            time.sleep(SAMPLE_EVERY_S)
    finally:
        for conn in conns:
            conn.close()


class _Fleet:
    """The relays and sites of one run: their streams end after it, their databases stay."""

    def __init__(self, sites: Sites, relays: LocalCluster, token: str, watched: int, run: int) -> None:
        self.sites, self.relays, self.token, self.watched, self.run = sites, relays, token, watched, run
        self.databases: list[tuple[LocalCluster, str]] = []

    def node_config(self, cluster: LocalCluster, dbname: str, role: str) -> config_module.Config:
        path = self.sites.root / f"{dbname}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "role": role,
                    "node_name": f"fleet-{self.run}-{dbname}".replace("_", "-"),
                    "database_url": self.sites.url(cluster, dbname),
                    "sync_token": self.token,
                    "face_model": FACE_MODEL,
                }
            )
        )
        path.chmod(0o600)
        return config_module.load(path)

    def database(self, cluster: LocalCluster, dbname: str) -> None:
        self.sites.execute(
            cluster,
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(dbname), sql.Identifier(TEMPLATE)
            ),
            dbname="postgres",
        )
        self.databases.append((cluster, dbname))

    def relay(self, n: int) -> str:
        dbname = f"fleet_{self.run}_relay_{n}"
        self.database(self.relays, dbname)
        config = self.node_config(self.relays, dbname, "relay")
        node.setup(config)
        self.sites.execute(
            self.relays,
            "INSERT INTO dossier_list (id, name) VALUES (%s, 'watched')",
            [self.watched],
            dbname=dbname,
        )
        links.attach(config, links.AttachRequest(self.watched, self.sites.leader_url, self.watched))
        return self.relays.tcp_url(dbname, "x").replace("x@", "")

    def site(self, n: int, upstream: str) -> str:
        dbname = f"fleet_{self.run}_site_{n}"
        self.database(self.sites.subscriber, dbname)
        config = self.node_config(self.sites.subscriber, dbname, "subscriber")
        node.setup(config)
        local = self.sites.make_list(self.sites.subscriber, "watched here", dbname)
        links.attach(config, links.AttachRequest(self.watched, upstream, local))
        return dbname

    def drop(self) -> None:
        """Their streams: the sites' subscriptions first (each drops its slot upstream), then
        the relays'. The databases stay, idle, until the cluster goes: a DROP DATABASE waits
        for every process to absorb a barrier, which pglogical's workers (loaded where it is
        installed) never do."""
        for cluster, dbname in sorted(self.databases, key=lambda made: made[0] is self.relays):
            with self.sites.connect(cluster, dbname) as conn:
                for row in conn.execute(
                    "SELECT subname FROM pg_subscription WHERE subdbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ):
                    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(row["subname"])))
        self.sites.execute(
            self.sites.leader,
            "SELECT pgsync.api_drop_group(name) FROM pgsync.group_registration",
        )


@contextmanager
def _built(
    sites: Sites, relays: LocalCluster, token: str, watched: int, run: int, topology: str, count: int
) -> Iterator[list[str]]:
    """The sites of one run, attached directly or through relays; their database names."""
    fleet = _Fleet(sites, relays, token, watched, run)
    try:
        how_many = min(int(topology.split()[0]), count) if "relay" in topology else 0
        upstreams = [fleet.relay(n) for n in range(how_many)] or [sites.leader_url]
        yield [fleet.site(n, upstreams[n % len(upstreams)]) for n in range(count)]
    finally:
        fleet.drop()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _window(
    sites: Sites,
    relays: LocalCluster,
    dbnames: list[str],
    probe: uuid.UUID,
    rate: int,
    seconds: float,
    events: str,
) -> dict[str, float]:
    stop = threading.Event()
    ages: list[float] = []
    load = [
        threading.Thread(target=_events, args=(sites, events, rate, stop)),
        threading.Thread(target=_probe, args=(sites, probe, stop)),
    ]
    for thread in load:
        thread.start()
    try:
        time.sleep(WARM_UP_S)
        leader_pids, relay_pids = walsenders(sites, sites.leader), walsenders(sites, relays)
        leader_before, relay_before = cpu_seconds(leader_pids), cpu_seconds(relay_pids)
        sampler = threading.Thread(target=_sample, args=(sites, dbnames[:SAMPLED_SITES], probe, ages, stop))
        sampler.start()
        start, worst = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            worst = max(worst, slot_lag_bytes(sites))
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        leader_cores = (cpu_seconds(leader_pids) - leader_before) / elapsed
        relay_cores = (cpu_seconds(relay_pids) - relay_before) / elapsed
    finally:
        stop.set()
        for thread in load:
            thread.join()
    sampler.join()
    return {
        "leader_cores": leader_cores,
        "relay_cores": relay_cores,
        "leader_walsenders": len(leader_pids),
        "p50_s": statistics.median(ages) if ages else float("nan"),
        "p99_s": _percentile(ages, 0.99) if ages else float("nan"),
        "max_lag_mb": worst / 1e6,
    }


def run(sites: Sites, counts: list[int], reps: int, seconds: float, rate: int) -> dict[str, Any]:
    token = yaml.safe_load(sites.configs["leader"].read_text())["sync_token"]
    sites.execute(
        sites.leader, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EVENTS_DATABASE)), dbname="postgres"
    )
    for dbname in ("dossiers", EVENTS_DATABASE):
        sites.execute(
            sites.leader,
            "CREATE TABLE fleet_event (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), "
            "payload bytea)",
            dbname=dbname,
        )
    watched = sites.filled_list("fleet watched", WATCHED_DOSSIERS)
    probe = sites.execute(
        sites.leader, "SELECT min(id::text)::uuid AS id FROM dossier WHERE dossier_list_id = %s", [watched]
    )[0]["id"]
    # pgsync-dossier's logins may reach any database of the relays' cluster (not only "dossiers").
    relays = make_cluster(sites.root, "relays", sites.bindir, dossier_database=None)
    try:
        for cluster in (sites.subscriber, relays):
            sites.execute(
                cluster, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)), dbname="postgres"
            )
            migrations.migrate(sites.url(cluster, TEMPLATE))  # each site and relay is a copy of it
        return _runs(sites, relays, token, watched, probe, counts, (reps, seconds, rate))
    finally:
        relays.remove()


def _runs(
    sites: Sites,
    relays: LocalCluster,
    token: str,
    watched: int,
    probe: uuid.UUID,
    counts: list[int],
    how: tuple[int, float, int],
) -> dict[str, Any]:
    """Every (sites, topology) run, `how` = (repetitions, window seconds, events a second)."""
    reps, seconds, rate = how
    measured: dict[tuple[str, int], dict[str, Series]] = {}
    run_number = 0
    for count in counts:
        for order in rotations(TOPOLOGIES, reps):
            for topology in order:
                run_number += 1
                with _built(sites, relays, token, watched, run_number, topology, count) as dbnames:
                    sites.checkpoint()
                    events = EVENTS_DATABASE if topology == "events elsewhere" else "dossiers"
                    found = _window(sites, relays, dbnames, probe, rate, seconds, events)
                series = measured.setdefault((topology, count), {})
                for key, value in found.items():
                    series.setdefault(
                        key, Series(key, "cores" if key.endswith("cores") else "")
                    ).values.append(value)
                print(f"({count} sites, {topology}: {found})", flush=True)
    return _report(measured, counts, rate, seconds)


def _report(
    measured: dict[tuple[str, int], dict[str, Series]], counts: list[int], rate: int, seconds: float
) -> dict[str, Any]:
    lines, results = [], {}
    for count in counts:
        direct = measured[("direct", count)]
        for topology in TOPOLOGIES:
            found = measured[(topology, count)]
            cpu, p99 = found["leader_cores"].median, found["p99_s"].median
            versus = cpu / direct["leader_cores"].median if direct["leader_cores"].median else float("nan")
            lines.append(
                [
                    str(count),
                    topology,
                    f"{found['leader_walsenders'].median:.0f}",
                    found["leader_cores"].cell(),
                    f"{versus:.2f}x",
                    f"{found['relay_cores'].median:.3f}",
                    f"{found['p50_s'].median * 1000:.0f} ms",
                    f"{p99 * 1000:.0f} ms",
                    f"{p99 / direct['p99_s'].median:.2f}x",
                    f"{found['max_lag_mb'].median:.1f} MB",
                ]
            )
            results[f"{count} {topology}"] = {key: series.as_dict() for key, series in found.items()}
    print(
        f"load: {rate} events/s of {EVENT_BYTES} B in batches of {EVENT_BATCH}, a probe update every "
        f"{PROBE_EVERY_S * 1000:.0f} ms; a {seconds:g} s window per run; medians (min-max) of the runs"
    )
    print(
        table(
            [
                "sites",
                "topology",
                "Leader walsenders",
                "Leader walsender cores",
                "/ direct",
                "relay walsender cores",
                "freshness p50",
                "p99",
                "p99 / direct",
                "max slot lag",
            ],
            lines,
        )
    )
    if 32 in counts:
        cpu = (
            results["32 2 relays"]["leader_cores"]["median"] / results["32 direct"]["leader_cores"]["median"]
        )
        p99 = results["32 2 relays"]["p99_s"]["median"] / results["32 direct"]["p99_s"]["median"]
        print(
            f"goal: 32 sites behind 2 relays cost the Leader {cpu:.2f}x the decode CPU of 32 direct "
            f"(<= 0.15x: {'met' if cpu <= 0.15 else 'NOT MET'}); last-hop p99 {p99:.2f}x direct "
            f"(<= 2x: {'met' if p99 <= 2 else 'NOT MET'})"
        )
    return {"rate_events_per_s": rate, "seconds": seconds, "results": results}

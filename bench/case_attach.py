"""attach: the initial copy of a list, against the fair floor and a native subscription.

- pgsync attach: the CLI as a user runs it (its own process, stderr on a terminal so the
  progress bar is drawn): checks, group and slot creation, pause, in-flight wait, the copy,
  resume and the barrier. Each repetition detaches (--purge) afterwards, so the next one
  creates its group and slot again, as the native subscription does.
- pgsync attach beside a list: the same, into a group that already streams another list of
  the Leader (50 dossiers, attached first, untimed): what a site adding a list pays for the
  catch-up before the copy and the settling of the group's other lists after it.
- fair floor (bench/README.md, "attach"): binary `COPY (SELECT ...) TO STDOUT` piped into
  `COPY ... FROM STDIN` in replica mode (no FK checks, no ordinary triggers), both tables in
  parallel, into the same tables with their indexes, committed. Nothing that moves the rows
  can do less.
- native: a hand-made publication + subscription (binary) of the same rows, from CREATE
  SUBSCRIPTION until every table is ready.
- pglogical (where its package is installed for the server, Debian's PostgreSQL 15 here): a
  replication set with the same row filter, from create_subscription until every table's
  sync is ready.
Every copy is checked afterwards: row counts and a content digest equal to the Leader list's.

With `at_scale` (`./run bench --size`), every pgsync attach goes beside the pause neighbour
(bench/pause.py), which measures how long the group's other lists waited, and the process's
peak RSS is kept; the ratio's baseline is the faster of the fair floor and native pub/sub,
named in the table.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from bench import pause
from bench.sites import Sites, has_pglogical
from bench.stats import Series, ratio, rotations, table
from pgsync_dossier.copier import COLUMNS, ROWS_PER_PART_ENV, relay


def _attach(sites: Sites, remote: int, rep: int, name: str = "replica") -> tuple[float, int, str]:
    local = sites.make_list(sites.subscriber, f"{name} {remote}.{rep}")
    return sites.attach(remote, local), local, "dossiers"


def _attach_in_one_part(sites: Sites, remote: int, rep: int) -> tuple[float, int, str]:
    """pgsync attach with its copy in one part whatever the list (as before parts existed):
    the pause the parts shorten, measured the same way."""
    local = sites.make_list(sites.subscriber, f"one part {remote}.{rep}")
    return sites.attach(remote, local, env={ROWS_PER_PART_ENV: str(10**12)}), local, "dossiers"


def _undo_attach(sites: Sites, local: int) -> None:
    # The next copy starts from tables as clean as the floor's: truncated, not bloated (beside
    # the pause neighbour's replica, which forbids TRUNCATE: vacuumed, the space free again).
    sites.ok("subscriber", "detach", str(local), "--purge")
    if "pause neighbour" in sites.lists:
        sites.execute(sites.subscriber, "VACUUM dossier, dossier_face")
    else:
        sites.execute(sites.subscriber, "TRUNCATE dossier, dossier_face")


NEIGHBOUR_ROWS = 50


def _attach_beside(sites: Sites, remote: int, rep: int) -> tuple[float, int, str]:
    """pgsync attach into a group that already replicates another list (same Leader, same
    schedule): before its copy the group's stream catches up to a heartbeat, and after it the
    other list's rows written since are settled. The other list is attached first, untimed."""
    if "neighbour" not in sites.lists:
        sites.lists["neighbour"] = sites.make_list(sites.leader, "neighbour")
        sites.fill(sites.lists["neighbour"], NEIGHBOUR_ROWS)
    beside = sites.make_list(sites.subscriber, f"neighbour replica {remote}.{rep}")
    sites.attach(sites.lists["neighbour"], beside, tty=False)
    sites.lists["neighbour replica"] = beside
    return _attach(sites, remote, rep, "replica beside a list")


def _undo_attach_beside(sites: Sites, local: int) -> None:
    sites.ok("subscriber", "detach", str(sites.lists.pop("neighbour replica")), "--purge")
    _undo_attach(sites, local)


def _floor(sites: Sites, remote: int, rep: int) -> tuple[float, int, str]:
    local = sites.make_list(sites.subscriber, f"floor {remote}.{rep}", "floor")
    errors: list[BaseException] = []

    def pipe(table: str) -> None:
        try:
            columns = [
                sql.SQL("{}::integer").format(sql.Literal(local))
                if c == "dossier_list_id"
                else sql.Identifier(c)
                for c in COLUMNS[table]
            ]
            with (
                sites.connect(sites.leader) as source,
                psycopg.connect(sites.url(sites.subscriber, "floor")) as target,
            ):
                target.execute("SET session_replication_role = replica")
                select = sql.SQL(
                    "COPY (SELECT {} FROM {} WHERE dossier_list_id = {}) TO STDOUT (FORMAT binary)"
                )
                into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
                with (
                    source.cursor().copy(
                        select.format(sql.SQL(", ").join(columns), sql.Identifier(table), sql.Literal(remote))
                    ) as out,
                    target.cursor().copy(
                        into.format(
                            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
                        )
                    ) as copy_in,
                ):
                    relay(out, copy_in)  # batched as pgsync's pipe is
                target.commit()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=pipe, args=(table,)) for table in COLUMNS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return seconds, local, "floor"


def _undo_floor(sites: Sites, local: int) -> None:
    sites.execute(sites.subscriber, "TRUNCATE dossier, dossier_face", dbname="floor")


def _native(sites: Sites, remote: int, rep: int) -> tuple[float, int, str]:
    name = f"bench_native_{remote}_{rep}"
    sites.publish_list(name, remote)
    with sites.connect(sites.subscriber, "native") as conn:
        start = time.perf_counter()
        conn.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (binary = true)").format(
                sql.Identifier(name), sql.Literal(sites.url(sites.leader)), sql.Identifier(name)
            )
        )
        while True:
            states = conn.execute(
                "SELECT r.srsubstate FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                "WHERE s.subname = %s",
                [name],
            ).fetchall()
            if states and all(row["srsubstate"] == "r" for row in states):
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    return seconds, remote, "native"


def _undo_native(sites: Sites, remote: int) -> None:
    with sites.connect(sites.subscriber, "native") as conn:
        # pg_subscription is shared by the cluster's databases: only this one's.
        subscriptions = conn.execute(
            "SELECT subname FROM pg_subscription WHERE subdbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
        for row in subscriptions:
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(row["subname"])))
        conn.execute("TRUNCATE dossier, dossier_face")
    for row in sites.execute(
        sites.leader, "SELECT pubname FROM pg_publication WHERE pubname LIKE 'bench_native%%'"
    ):
        sites.execute(sites.leader, sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(row["pubname"])))


PEER_TIMEOUT_S = 600


def _pglogical(sites: Sites, remote: int, rep: int) -> tuple[float, int, str]:
    """pglogical 2: a replication set with the list's row filter on both tables, and a
    subscription that synchronizes the data; done when every table's sync is ready."""
    name = f"bench_pgl_{remote}_{rep}"
    with sites.connect(sites.leader) as conn:
        conn.execute("SELECT pglogical.create_replication_set(%s)", [name])
        for table in ("dossier", "dossier_face"):
            conn.execute(
                "SELECT pglogical.replication_set_add_table(set_name := %s, relation := %s::regclass, "
                "synchronize_data := true, columns := %s, row_filter := %s)",
                # pglogical's copy names every column; a generated one (content_hash) is refused.
                [name, f"public.{table}", list(COLUMNS[table]), f"dossier_list_id = {int(remote)}"],
            )
    with sites.connect(sites.subscriber, "pglogical") as conn:
        start = time.perf_counter()
        conn.execute(
            "SELECT pglogical.create_subscription(subscription_name := %s, provider_dsn := %s, "
            "replication_sets := ARRAY[%s], synchronize_structure := false, synchronize_data := true, "
            "forward_origins := '{}')",
            [name, sites.url(sites.leader), name],
        )
        while True:
            states = conn.execute(
                "SELECT s.sync_status FROM pglogical.local_sync_status s "
                "JOIN pglogical.subscription u ON u.sub_id = s.sync_subid WHERE u.sub_name = %s",
                [name],
            ).fetchall()
            if len(states) >= 3 and all(row["sync_status"] == "r" for row in states):
                break
            if time.perf_counter() - start > PEER_TIMEOUT_S:
                status = conn.execute("SELECT status FROM pglogical.show_subscription_status(%s)", [name])
                raise RuntimeError(
                    f"pglogical: no sync after {PEER_TIMEOUT_S}s ({status.fetchone()}); see its log"
                )
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    return seconds, remote, "pglogical"


def _undo_pglogical(sites: Sites, remote: int) -> None:
    with sites.connect(sites.subscriber, "pglogical") as conn:
        for row in conn.execute("SELECT sub_name FROM pglogical.subscription").fetchall():
            conn.execute("SELECT pglogical.drop_subscription(%s)", [row["sub_name"]])
        conn.execute("TRUNCATE dossier, dossier_face")
    for row in sites.execute(
        sites.leader, "SELECT set_name FROM pglogical.replication_set WHERE set_name LIKE 'bench_pgl%%'"
    ):
        sites.execute(sites.leader, "SELECT pglogical.drop_replication_set(%s)", [row["set_name"]])


RUNNERS = {
    "pgsync attach (CLI)": (_attach, _undo_attach),
    "pgsync attach beside a list (CLI)": (_attach_beside, _undo_attach_beside),
    "pgsync attach in one part (CLI)": (_attach_in_one_part, _undo_attach),
    "fair floor": (_floor, _undo_floor),
    "native pub/sub": (_native, _undo_native),
    "pglogical": (_pglogical, _undo_pglogical),
}


#: The methods a `--size` run times: every pgsync attach there is beside the pause neighbour.
AT_SCALE = (
    "pgsync attach (CLI)",
    "pgsync attach in one part (CLI)",
    "fair floor",
    "native pub/sub",
    "pglogical",
)
PEERS = ("fair floor", "native pub/sub")


def run(sites: Sites, sizes: list[int], reps: int, at_scale: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": {}}
    lines = []
    for size in sizes:
        remote = sites.filled_list("list", size)
        sites.filled_list("not replicated", max(size // 10, 1))
        expected = sites.content(sites.leader, remote)
        methods = [
            m for m in (AT_SCALE if at_scale else RUNNERS) if m != "pglogical" or has_pglogical(sites.bindir)
        ]
        series = {method: Series(method) for method in methods}
        rss = Series("pgsync attach peak RSS", "MB")
        paused = {
            m: Series(f"the other lists' longest wait, {m}", "s") for m in methods if m.startswith("pgsync")
        }
        for rep, order in enumerate(rotations(methods, reps)):
            for method in order:
                runner, undo = RUNNERS[method]
                sites.checkpoint()
                if at_scale and method.startswith("pgsync"):
                    with pause.watched(sites) as waited:
                        seconds, local, db = runner(sites, remote, rep)
                    paused[method].values.append(waited.seconds)
                    if method == "pgsync attach (CLI)":
                        rss.values.append(sites.last_peak_rss_mb)
                else:
                    seconds, local, db = runner(sites, remote, rep)
                got = sites.content(sites.subscriber, local, db)
                if got != expected:
                    raise RuntimeError(
                        f"{method}: copied {got[:2]}, expected {expected[:2]} (or digests differ)"
                    )
                series[method].values.append(seconds)
                undo(sites, local)
        floor = series["fair floor"]
        fastest = min((series[p] for p in PEERS), key=lambda s: s.median)
        results["sizes"][size] = {
            "series": [s.as_dict() for s in series.values()],
            "ratios_to_floor": {m: ratio(s, floor) for m, s in series.items()},
            "fastest_peer": fastest.name,
            "ratios_to_fastest_peer": {m: ratio(s, fastest) for m, s in series.items()},
        }
        if at_scale:
            results["sizes"][size]["peak_rss_mb"] = rss.as_dict()
            results["sizes"][size]["other_lists_wait_s"] = paused["pgsync attach (CLI)"].as_dict()
            results["sizes"][size]["other_lists_wait_in_one_part_s"] = paused[
                "pgsync attach in one part (CLI)"
            ].as_dict()
        for method, s in series.items():
            r, f = ratio(s, floor), ratio(s, fastest)
            lines.append(
                [
                    f"{size:,}",
                    method,
                    s.cell(),
                    f"{r:.2f}x" if r is not None else "-",
                    f"{f:.2f}x" if f is not None else "-",
                ]
            )
        if at_scale:
            print(
                f"({size:,}: pgsync attach's peak RSS {rss.cell()}; the group's other lists waited "
                f"{paused['pgsync attach (CLI)'].cell()} (in one part: "
                f"{paused['pgsync attach in one part (CLI)'].cell()}); the faster peer: {fastest.name})"
            )
    faces = f" x {sites.faces_per_dossier} faces" if sites.faces_per_dossier > 1 else " + faces"
    print(table([f"dossiers{faces}", "method", "median (min-max)", "/ floor", "/ faster peer"], lines))
    return results

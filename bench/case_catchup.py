"""catchup: a windowed list brought up to date after its Leader list changed.

A list of N dossiers + N faces is attached with a schedule whose window is closed, so nothing
flows until a sync. Before each "catch-up" repetition a share of the list changes on the
Leader (untimed): 40% of the changes are updates (a comment, and an embedding byte for every
other one), 15% each new dossiers, deletes, moves out to an unreplicated list and moves in
from it, so the list keeps its size. Then, in rotated order:
- catch-up: `sync T`, as a timer runs it (the window opens, the stream catches up, it closes);
- idle sync: `sync T` with nothing changed (what a sync costs before any row);
- fresh attach: the list detached with --purge and the tables vacuumed (untimed), then attached
  again.
After each, the replica must equal the Leader list.

Before a catch-up the windowed group's slot is a backlog of WAL; past 64 MB the sync weighs
it against the list's size and may repair in place instead of replaying (backlog.py). Each
catch-up's backlog and the choice its sync recorded in the history are kept. With `forced`
(`./run bench --size`, unless --without-forced), two more methods replay whatever the backlog
(PGSYNC_DOSSIER_REPAIR_ABOVE=inf) or repair it in place whatever it is (=0): what the choice
saved, or cost, and where the bound between them lies.
"""

from __future__ import annotations

from typing import Any

from bench.sites import Sites
from bench.stats import Series, ratio, rotations, table
from pgsync_dossier.backlog import REPAIR_ABOVE_ENV

#: A window that is closed nearly always (03:00 on the first of January).
CLOSED_SCHEDULE = "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1;BYHOUR=3"
METHODS = ("catch-up sync", "idle sync", "fresh attach")
REPLAYED = "catch-up, always replayed"
REPAIRED = "catch-up, always repaired"
AT_SCALE = (METHODS[0], REPLAYED, REPAIRED, *METHODS[1:])
#: The bound each forced method runs with (backlog.py): replay whatever the backlog, or repair
#: whatever it is (from 64 MB on, below which nothing is weighed).
FORCED = {REPLAYED: "inf", REPAIRED: "0"}
#: A repeated catch-up this many times the median is slow: its log is printed and kept.
SLOW = 2.0
#: Shares of the changes, by kind.
MIX = {"update": 0.40, "insert": 0.15, "delete": 0.15, "move out": 0.15, "move in": 0.15}


def change(sites: Sites, remote: int, pool: int, share: float, size: int) -> None:
    """`share` of the Leader list changed by MIX while the window is closed (the list keeps its
    size); bench memory makes the same backlog."""
    changes = round(size * share)
    count = {kind: max(1, round(changes * part)) for kind, part in MIX.items()}
    sample = "(SELECT id FROM dossier WHERE dossier_list_id = %(list)s ORDER BY random() LIMIT %(n)s)"
    with sites.connect(sites.leader) as conn:
        conn.execute(
            f"UPDATE dossier SET comment = comment || '.' WHERE id IN {sample}",
            {"list": remote, "n": count["update"]},
        )
        conn.execute(
            "UPDATE dossier_face SET embedding = set_byte(embedding, 0, (random() * 255)::int) "
            f"WHERE dossier_id IN {sample}",
            {"list": remote, "n": count["update"] // 2},
        )
        conn.execute(f"DELETE FROM dossier WHERE id IN {sample}", {"list": remote, "n": count["delete"]})
        moved_out = conn.execute(
            f"UPDATE dossier SET dossier_list_id = %(to)s WHERE id IN {sample} RETURNING id",
            {"list": remote, "to": pool, "n": count["move out"]},
        ).fetchall()
        conn.execute(
            "UPDATE dossier SET dossier_list_id = %(to)s WHERE id IN "
            "(SELECT id FROM dossier WHERE dossier_list_id = %(list)s AND NOT id = ANY (%(just)s) "
            "ORDER BY random() LIMIT %(n)s)",
            {"list": pool, "to": remote, "n": count["move in"], "just": [r["id"] for r in moved_out]},
        )
    sites.fill(remote, count["insert"])


def _backlog_mb(sites: Sites) -> float:
    """The windowed group's backlog on the Leader: WAL since its stopped slot's position."""
    rows = sites.execute(
        sites.leader,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS behind "
        "FROM pg_replication_slots WHERE slot_name LIKE 'pgsync%%' AND NOT active",
    )
    return max((float(r["behind"]) for r in rows), default=0.0) / (1024 * 1024)


def last_note(sites: Sites) -> str:
    """The latest sync's note: the replay-or-repair choice it made, as the history keeps it."""
    rows = sites.execute(
        sites.subscriber,
        "SELECT coalesce(note, '') AS note FROM pgsync.sync_run WHERE finished_at IS NOT NULL "
        "ORDER BY id DESC LIMIT 1",
    )
    return rows[0]["note"] if rows else ""


def run(sites: Sites, size: int, shares: list[float], reps: int, forced: bool = False) -> dict[str, Any]:
    """The run's shared Leader list of `size` is changed here: this case runs after the others.
    `forced` adds the always-replayed and always-repaired catch-ups."""
    results: dict[str, Any] = {"size": size, "shares": {}}
    remote = sites.filled_list("list", size)
    pool = sites.make_list(sites.leader, f"catchup pool {size}")
    sites.fill(pool, max(size // 4, 10))
    local = sites.make_list(sites.subscriber, f"catchup replica {size}")
    sites.attach(remote, local, "--schedule", CLOSED_SCHEDULE, tty=False)
    lines = []
    for share in shares:
        label = f"{share:.0%}"
        methods = AT_SCALE if forced else METHODS
        series = {method: Series(method) for method in methods}
        rss = {method: Series(f"{method} peak RSS", "MB") for method in methods}
        backlogs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods if m == METHODS[0] or m in FORCED}
        for order in rotations(methods, reps):
            for method in order:
                if method in backlogs:
                    change(sites, remote, pool, share, size)
                    sites.checkpoint()
                    behind = _backlog_mb(sites)
                    env = {REPAIR_ABOVE_ENV: FORCED[method]} if method in FORCED else None
                    timed = sites.cli("subscriber", "sync", str(local), env=env)
                    if timed.exit_code != 0:
                        raise RuntimeError(f"{method} failed: {timed.stderr.strip()[-400:]}")
                    series[method].values.append(timed.seconds)
                    backlogs[method].append({"backlog_mb": behind, "choice": last_note(sites)})
                elif method == "idle sync":
                    sites.checkpoint()
                    series[method].values.append(sites.ok("subscriber", "sync", str(local)).seconds)
                else:
                    sites.ok("subscriber", "detach", str(local), "--purge")
                    sites.execute(sites.subscriber, "VACUUM dossier, dossier_face")  # space free again
                    sites.checkpoint()
                    series[method].values.append(
                        sites.attach(remote, local, "--schedule", CLOSED_SCHEDULE, tty=False)
                    )
                rss[method].values.append(sites.last_peak_rss_mb)
                if sites.content(sites.subscriber, local) != sites.content(sites.leader, remote):
                    raise RuntimeError(f"{method}: the replica differs from its Leader list afterwards")
                # Each run as it ends: a run stopped before its table (a million rows take hours)
                # still leaves what it measured.
                weighed = backlogs[method][-1] if method in backlogs else None
                seen = (
                    f"; backlog {weighed['backlog_mb']:,.0f} MB; {weighed['choice'] or 'no note'}"
                    if weighed
                    else ""
                )
                print(
                    f"({label} {method}: {series[method].values[-1]:.2f} s, "
                    f"peak RSS {rss[method].values[-1]:.1f} MB{seen})",
                    flush=True,
                )
        catchup, idle, fresh = (series[m] for m in METHODS)
        results["shares"][label] = {
            "series": [s.as_dict() for s in series.values()],
            "catchup_over_idle": ratio(catchup, idle),
            "fresh_attach_over_catchup": ratio(fresh, catchup),
            "catchup_over_fresh_attach": ratio(catchup, fresh),
            "peak_rss_mb": {method: r.as_dict() for method, r in rss.items()},
            "backlogs": backlogs,
        }
        if forced:
            for method in FORCED:
                results["shares"][label][f"{method}_over_fresh_attach"] = ratio(series[method], fresh)
                lines.append([label, method, series[method].cell(), "-", "-", rss[method].cell()])
        over_idle, fresh_over = ratio(catchup, idle), ratio(fresh, catchup)
        peaks = {m: rss[m].cell() for m in METHODS}
        lines.append(
            [
                label,
                "catch-up sync",
                catchup.cell(),
                f"{over_idle:.2f}x" if over_idle else "-",
                "-",
                peaks["catch-up sync"],
            ]
        )
        lines.append([label, "idle sync", idle.cell(), "1.00x", "-", peaks["idle sync"]])
        lines.append(
            [
                label,
                "fresh attach",
                fresh.cell(),
                "-",
                f"{fresh_over:.1f}x" if fresh_over else "-",
                peaks["fresh attach"],
            ]
        )
    sites.ok("subscriber", "detach", str(local), "--purge")  # the next cases start clean
    faces = size * sites.faces_per_dossier
    print(f"(a windowed list of {size:,} dossiers + {faces:,} faces; changes per share: {MIX})")
    print(
        table(
            ["changed", "method", "median (min-max)", "vs idle sync", "fresh / catch-up", "peak RSS"], lines
        )
    )
    return results


def _checkpoints(sites: Sites) -> int:
    """The Leader's checkpoints so far (pg_stat_checkpointer from 17, pg_stat_bgwriter before)."""
    if int(sites.version.split(".")[0]) >= 17:
        query = "SELECT num_timed + num_requested AS n FROM pg_stat_checkpointer"
    else:
        query = "SELECT checkpoints_timed + checkpoints_req AS n FROM pg_stat_bgwriter"
    return int(sites.execute(sites.leader, query)[0]["n"])


def repeated(sites: Sites, size: int, share: float, runs: int) -> dict[str, Any]:
    """The same catch-up `runs` times in a row, replayed whatever its backlog: does one ever
    take many times the others (a 50% catch-up on 15 once took 32.3 s against ~3.5 s)? Each
    run's seconds, the WAL it replayed and the Leader's checkpoints during it are kept."""
    remote = sites.filled_list("repeat", size)
    pool = sites.make_list(sites.leader, "repeat pool")
    sites.fill(pool, max(size // 4, 10))
    local = sites.make_list(sites.subscriber, f"repeat replica {size}")
    sites.attach(remote, local, "--schedule", CLOSED_SCHEDULE, tty=False)
    runs_seen: list[dict[str, Any]] = []
    for _ in range(runs):
        change(sites, remote, pool, share, size)
        sites.checkpoint()
        behind = _backlog_mb(sites)
        before = _checkpoints(sites)
        # --debug: each step's time is in the log, kept for a run that is slow.
        timed = sites.cli("subscriber", "--debug", "sync", str(local), env={REPAIR_ABOVE_ENV: "inf"})
        if timed.exit_code != 0:
            raise RuntimeError(f"catch-up failed: {timed.stderr.strip()[-400:]}")
        after = _checkpoints(sites)
        if sites.content(sites.subscriber, local) != sites.content(sites.leader, remote):
            raise RuntimeError("a repeated catch-up left the replica different from its Leader list")
        runs_seen.append(
            {
                "seconds": timed.seconds,
                "backlog_mb": behind,
                "checkpoints": after - before,
                "log": timed.stderr,
            }
        )
    sites.ok("subscriber", "detach", str(local), "--purge")
    series = Series("catch-up, always replayed", values=[r["seconds"] for r in runs_seen])
    print(f"(a windowed list of {size:,} dossiers; {share:.0%} changed before each of {runs} catch-ups)")
    print(", ".join(f"{r['seconds']:.2f}" for r in runs_seen))
    print(f"median {series.cell()}; slowest / median {max(series.values) / series.median:.2f}x")
    for number, seen in enumerate(runs_seen, 1):
        if seen["seconds"] >= SLOW * series.median:
            print(f"(run {number}: {seen['seconds']:.2f} s, {seen['checkpoints']} checkpoints; its log:)")
            print(seen["log"].rstrip())
    for seen in runs_seen:
        if seen["seconds"] < SLOW * series.median:
            del seen["log"]  # the JSON keeps the logs of slow runs only
    return {"size": size, "share": share, "runs": runs_seen, "series": series.as_dict()}

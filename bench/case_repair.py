"""repair: bringing a damaged replica back, in place, against copying the list afresh.

A list of N dossiers + N faces is attached; before each repetition 1% of its rows are damaged
behind the guard's back (a quarter each: dossiers deleted with their faces, comments changed,
embeddings changed, stray rows added). Then, in rotated order:
- repair in place: `repair T --confirm`, as a user runs it;
- a fresh attach of the same list: the list detached with --purge and the tables vacuumed (not
  timed), then attached.
Then one more repair, untimed, while a reader polls the list's row count: the smallest count
it saw is reported (the list must never go empty). The reader is kept out of the timed runs:
on a small machine its polling takes a core from the repair, and the fresh attach would run
without it. Every result is checked: the replica equals its Leader list afterwards.
With `at_scale` (`./run bench --size`), each repair and attach keeps its peak RSS, and each
repair runs beside the pause neighbour (bench/pause.py): how long the group's other lists
waited.
"""

from __future__ import annotations

import threading
from typing import Any

from bench import pause
from bench.sites import Sites, Timed
from bench.stats import Series, ratio, rotations, table

METHODS = ("repair in place (CLI)", "fresh attach (CLI)")


def damage(sites: Sites, local: int, rows: int) -> None:
    """1% of a replica damaged behind the guard's back (bench memory repairs the same)."""
    quarter = max(rows // 400, 1)  # 1% of the rows, a quarter of each kind
    with sites.connect(sites.subscriber) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL pgsync.bulk = on")
        ids = [r["id"] for r in conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s", [local])]
        conn.execute("DELETE FROM dossier_face WHERE dossier_id = ANY (%s)", [ids[:quarter]])
        conn.execute("DELETE FROM dossier WHERE id = ANY (%s)", [ids[:quarter]])
        conn.execute(
            "UPDATE dossier SET comment = 'damaged' WHERE id = ANY (%s)", [ids[quarter : 2 * quarter]]
        )
        conn.execute(
            "UPDATE dossier_face SET embedding = '\\x00' WHERE dossier_id = ANY (%s)",
            [ids[2 * quarter : 3 * quarter]],
        )
        conn.execute(
            "INSERT INTO dossier (dossier_list_id, name) "
            "SELECT %s, 'stray ' || g FROM generate_series(1, %s) g",
            [local, quarter],
        )


def _watching(sites: Sites, local: int, *command: str) -> tuple[Timed, int]:
    """Run a command while a reader polls the list's row count; the fewest rows it saw."""
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with sites.connect(sites.subscriber) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s", [local]
                ).fetchone()
                seen.append(int(row["n"]))  # type: ignore[index]

    reader = threading.Thread(target=read)
    reader.start()
    try:
        timed = sites.cli("subscriber", *command, tty=True)
    finally:
        stop.set()
        reader.join()
    return timed, min(seen)


def run(sites: Sites, sizes: list[int], reps: int, at_scale: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": {}}
    lines = []
    for size in sizes:
        remote, local, expected = sites.live_replica(f"repair {size}", size)
        series = {method: Series(method) for method in METHODS}
        rss = {method: Series(f"{method} peak RSS", "MB") for method in METHODS}
        paused = Series("the other lists' longest wait during a repair", "s")
        for order in rotations(METHODS, reps):
            for method in order:
                if method.startswith("repair"):
                    damage(sites, local, size)
                    sites.checkpoint()
                    if at_scale:
                        with pause.watched(sites) as waited:
                            timed = sites.cli("subscriber", "repair", str(local), "--confirm", tty=True)
                        paused.values.append(waited.seconds)
                    else:
                        timed = sites.cli("subscriber", "repair", str(local), "--confirm", tty=True)
                    if timed.exit_code != 0:
                        raise RuntimeError(f"repair failed: {timed.stderr.strip()[-400:]}")
                    series[method].values.append(timed.seconds)
                else:
                    series[method].values.append(sites.attach_again(remote, local))
                rss[method].values.append(sites.last_peak_rss_mb)
                if sites.content(sites.subscriber, local) != expected:
                    found = sites.cli("subscriber", "verify", str(local), "--json")
                    raise RuntimeError(
                        f"{method}: the replica differs from its Leader list afterwards "
                        f"({sites.content(sites.subscriber, local)} against {expected}); verify says "
                        f"{found.stdout.strip() or found.stderr.strip()}"
                    )
        damage(sites, local, size)
        watched, fewest = _watching(sites, local, "repair", str(local), "--confirm")
        if watched.exit_code != 0 or sites.content(sites.subscriber, local) != expected:
            raise RuntimeError(f"the watched repair failed: {watched.stderr.strip()[-400:]}")
        sites.ok("subscriber", "detach", str(local), "--purge")  # the next cases start clean
        fresh = series["fresh attach (CLI)"]
        repair = series["repair in place (CLI)"]
        speedup = ratio(fresh, repair)
        results["sizes"][size] = {
            "series": [s.as_dict() for s in series.values()],
            "fresh_attach_over_repair": speedup,
            "fewest_dossiers_a_reader_saw_during_a_repair": fewest,
            "peak_rss_mb": {method: r.as_dict() for method, r in rss.items()},
        }
        if at_scale:
            results["sizes"][size]["other_lists_wait_s"] = paused.as_dict()
            print(
                f"({size:,}: peak RSS of repair {rss[METHODS[0]].cell()}, "
                f"of attach {rss[METHODS[1]].cell()}; "
                f"the group's other lists waited {paused.cell()} during a repair)"
            )
        lines.append(
            [
                f"{size:,}",
                "repair in place (CLI)",
                repair.cell(),
                _versus(speedup),
            ]
        )
        lines.append([f"{size:,}", "fresh attach (CLI)", fresh.cell(), "1.0x"])
        print(f"(a reader polling the list during a repair of {size:,} saw {fewest:,} dossiers at least)")
    print(table(["dossiers + faces", "method", "median (min-max)", "vs fresh attach"], lines))
    return results


def _versus(speedup: float | None) -> str:
    if speedup is None:
        return "-"
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"

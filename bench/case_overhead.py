"""overhead: what everyday commands cost as whole processes, at 1, 20 and 100 lists.

The first list holds `first_list_rows` dossiers (100,000), the others 5 each, as on a site
with one large watch list and many small ones: `status` counts every list's rows on both
sides, and its cost must follow the rows, not the lists times the rows.

Each command runs as its own process, as a timer or an operator runs it, against
`config check` (a process that starts, reads the config and exits) measured in the same
rotation. `sync --all` with nothing to do is compared with `sync` of one list: a sync is
one barrier per group, not per list. `status` must open one Leader connection per Leader,
whatever the number of lists: counted in the Leader's pg_stat_database.sessions.

`floor` is what any command that reads both sides cannot do without: a process that imports
the CLI with its config module and psycopg, and connects to this database and to the Leader's
(then exits). Each command is also given as a ratio to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from bench.sites import Sites, Timed
from bench.stats import Series, ratio, rotations, table
from pgsync_dossier import config as config_module
from pgsync_dossier import links

COMMANDS = {
    "config check": ("config", "check"),
    "status": ("status",),
    "status --json": ("status", "--json"),
    "tick (nothing due)": ("tick",),
    "sync --all (nothing changed)": ("sync", "--all"),
}


FLOOR = "floor (imports + 2 connections)"
_FLOOR_PROGRAM = (
    "import os, psycopg, pgsync_dossier.cli, pgsync_dossier.config\n"
    "for url in os.environ['PGSYNC_BENCH_URLS'].split(): psycopg.connect(url).close()"
)


def _floor(sites: Sites) -> Timed:
    """The floor as its own process; the URLs (the bench's own clusters) go in the environment."""
    urls = f"{sites.url(sites.subscriber)} {sites.url(sites.leader)}"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _FLOOR_PROGRAM],
        capture_output=True,
        text=True,
        env={**os.environ, "PGSYNC_BENCH_URLS": urls},
        check=False,
    )
    return Timed(time.perf_counter() - start, done.returncode, done.stdout, done.stderr)


def _attach_up_to(sites: Sites, count: int, attached: list[int], first_list_rows: int) -> None:
    """Attach lists (in-process: the setup is not what is measured) until `count` are."""
    cfg = config_module.load(sites.configs["subscriber"])
    while len(attached) < count:
        n = len(attached)
        remote = sites.make_list(sites.leader, f"overhead {n}")
        sites.fill(remote, first_list_rows if n == 0 else 5)
        local = sites.make_list(sites.subscriber, f"overhead replica {n}")
        links.attach(cfg, links.AttachRequest(remote, sites.leader_url, local))
        attached.append(local)


def _status_connections(sites: Sites) -> int:
    """Sessions opened on the Leader's database by one `status` (read from one held session,
    which was counted before the first read)."""
    with sites.connect(sites.leader) as watcher:

        def sessions() -> int:
            watcher.execute("SELECT pg_stat_clear_snapshot()")
            row = watcher.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = 'dossiers'"
            ).fetchone()
            return int(row["sessions"])  # type: ignore[index]

        before = sessions()
        sites.ok("subscriber", "status")
        return sessions() - before


def run(sites: Sites, list_counts: list[int], reps: int, first_list_rows: int) -> dict[str, Any]:
    results: dict[str, Any] = {"lists": {}, "first_list_rows": first_list_rows}
    lines = []
    attached: list[int] = []
    for count in list_counts:
        _attach_up_to(sites, count, attached, first_list_rows)
        sites.age_replicas()  # index-only counts need no heap visits then
        commands = {**COMMANDS, "sync (one list)": ("sync", str(attached[0]))}
        series = {name: Series(name) for name in [*commands, FLOOR]}
        for order in rotations(list(series), reps):
            for name in order:
                timed = _floor(sites) if name == FLOOR else sites.cli("subscriber", *commands[name])
                if timed.exit_code != 0:
                    raise RuntimeError(f"{name} failed: {timed.stderr.strip()[-300:]}")
                series[name].values.append(timed.seconds)
        status_connections = _status_connections(sites)
        base = series["config check"]
        floor = series[FLOOR]
        one = series["sync (one list)"]
        results["lists"][count] = {
            "series": [s.as_dict() for s in series.values()],
            "ratios_to_config_check": {name: ratio(s, base) for name, s in series.items()},
            "ratios_to_floor": {name: ratio(s, floor) for name, s in series.items()},
            "sync_all_to_one_list": ratio(series["sync --all (nothing changed)"], one),
            "leader_connections_per_status": status_connections,
        }
        for name, s in series.items():
            lines.append([str(count), name, s.cell(), _times(ratio(s, base)), _times(ratio(s, floor))])
        lines.append(
            [
                str(count),
                "sync --all / sync (one list)",
                f"{ratio(series['sync --all (nothing changed)'], one):.2f}x",
                f"status: {status_connections} Leader connection(s)",
                "",
            ]
        )
    print(table(["lists", "command", "median (min-max)", "/ config check", "/ floor"], lines))
    for local in attached:
        sites.ok("subscriber", "detach", str(local), "--purge")
    return results


def _times(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"

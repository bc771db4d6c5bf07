"""overhead: what everyday commands cost as whole processes, at 1, 20 and 100 lists.

Each command runs as its own process, as a timer or an operator runs it, against
`config check` (a process that starts, reads the config and exits) measured in the same
rotation. `sync --all` with nothing to do is compared with `sync` of one list: a sync is
one barrier per group, not per list. `status` must open one Leader connection per Leader,
whatever the number of lists: counted in the Leader's pg_stat_database.sessions.
"""

from __future__ import annotations

from typing import Any

from bench.sites import Sites
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


def _attach_up_to(sites: Sites, count: int, attached: list[int]) -> None:
    """Attach lists (in-process: the setup is not what is measured) until `count` are."""
    cfg = config_module.load(sites.configs["subscriber"])
    while len(attached) < count:
        n = len(attached)
        remote = sites.make_list(sites.leader, f"overhead {n}")
        sites.fill(remote, 5)
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


def run(sites: Sites, list_counts: list[int], reps: int) -> dict[str, Any]:
    results: dict[str, Any] = {"lists": {}}
    lines = []
    attached: list[int] = []
    for count in list_counts:
        _attach_up_to(sites, count, attached)
        commands = {**COMMANDS, "sync (one list)": ("sync", str(attached[0]))}
        series = {name: Series(name) for name in commands}
        for order in rotations(list(commands), reps):
            for name in order:
                timed = sites.cli("subscriber", *commands[name])
                if timed.exit_code != 0:
                    raise RuntimeError(f"{name} failed: {timed.stderr.strip()[-300:]}")
                series[name].values.append(timed.seconds)
        status_connections = _status_connections(sites)
        base = series["config check"]
        one = series["sync (one list)"]
        results["lists"][count] = {
            "series": [s.as_dict() for s in series.values()],
            "ratios_to_config_check": {name: ratio(s, base) for name, s in series.items()},
            "sync_all_to_one_list": ratio(series["sync --all (nothing changed)"], one),
            "leader_connections_per_status": status_connections,
        }
        for name, s in series.items():
            r = ratio(s, base)
            lines.append([str(count), name, s.cell(), f"{r:.2f}x" if r is not None else "-"])
        lines.append(
            [
                str(count),
                "sync --all / sync (one list)",
                f"{ratio(series['sync --all (nothing changed)'], one):.2f}x",
                f"status: {status_connections} Leader connection(s)",
            ]
        )
    print(table(["lists", "command", "median (min-max)", "/ config check"], lines))
    for local in attached:
        sites.ok("subscriber", "detach", str(local), "--purge")
    return results

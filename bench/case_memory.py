"""memory: each pgsync command's own peak RSS on a list of N dossiers, against the same at
REFERENCE dossiers (the goal: within 50 MB, whatever the list).

One pass per size, each command once (a peak is a property of the code path, not a timing:
repetitions would measure the same high-water mark): attach of a continuous replica (on a
terminal, the progress bar drawn), `verify`, `repair --confirm` of 1% damaged, `detach
--purge`; then a windowed replica, 50% of the Leader list changed, and the `sync` that
catches it up (its backlog repaired in place or replayed, as the sync chooses: its choice is
printed). The attach runs beside the pause neighbour (bench/pause.py): its copy goes in
parts, and the neighbour's longest wait is printed. The peak is the process's VmHWM
(bench/sites.py, _Peak). Timings are printed for orientation only: this case may run beside
another, and they are not its subject.
"""

from __future__ import annotations

from typing import Any

from bench import case_catchup, case_repair, pause
from bench.sites import Sites
from bench.stats import table

GOAL_MB = 50.0


def _pass(sites: Sites, size: int) -> dict[str, dict[str, float]]:
    remote = sites.filled_list("list", size)
    pool = sites.filled_list("memory pool", max(size // 4, 10))
    peaks: dict[str, dict[str, float]] = {}

    def ran(name: str, *args: str, tty: bool = False) -> None:
        timed = sites.cli("subscriber", *args, tty=tty)
        if timed.exit_code != 0:
            raise RuntimeError(f"{name} failed ({timed.exit_code}): {timed.stderr.strip()[-400:]}")
        peaks[name] = {"peak_rss_mb": timed.peak_rss_mb, "seconds": timed.seconds}

    local = sites.make_list(sites.subscriber, f"memory {size}")
    attach = ("attach", "--remote-list", str(remote), "--remote-url", sites.leader_url, "--local-list")
    with pause.watched(sites) as waited:  # beside the neighbour: the copy goes in parts
        ran("attach", *attach, str(local), tty=True)
    peaks["attach"]["other_lists_wait_s"] = waited.seconds
    sites.age_replicas()
    ran("verify", "verify", str(local), "--json")
    case_repair.damage(sites, local, size)
    ran("repair of 1%", "repair", str(local), "--confirm", tty=True)
    ran("detach --purge", "detach", str(local), "--purge")
    sites.execute(sites.subscriber, "VACUUM dossier, dossier_face")
    ran("attach, windowed", *attach, str(local), "--schedule", case_catchup.CLOSED_SCHEDULE)
    case_catchup.change(sites, remote, pool, 0.50, size)
    # The default --timeout (300 s) is too short for this catch-up at a million on 2 cores.
    ran("catch-up of 50%", "sync", str(local), "--timeout", "3600")
    peaks["catch-up of 50%"]["choice"] = case_catchup.last_note(sites)  # type: ignore[assignment]
    if sites.content(sites.subscriber, local) != sites.content(sites.leader, remote):
        raise RuntimeError("memory: the replica differs from its Leader list after the catch-up")
    ran("detach --purge, windowed", "detach", str(local), "--purge")
    sites.execute(sites.subscriber, "VACUUM dossier, dossier_face")
    return peaks


def run(sites: Sites, sizes: list[int]) -> dict[str, Any]:
    passes = {size: _pass(sites, size) for size in sizes}
    small, large = min(sizes), max(sizes)
    lines = []
    for command in passes[large]:
        a, b = passes[small][command]["peak_rss_mb"], passes[large][command]["peak_rss_mb"]
        lines.append(
            [
                command,
                f"{a:.0f} MB",
                f"{b:.0f} MB",
                f"{b - a:+.0f} MB" + ("" if b - a <= GOAL_MB else " (goal 50 MB: NOT MET)"),
                f"{passes[small][command]['seconds']:.1f} s / {passes[large][command]['seconds']:.1f} s",
            ]
        )
    print(table(["command", f"{small:,}", f"{large:,}", "growth", "seconds (orientation)"], lines))
    choice = passes[large]["catch-up of 50%"].get("choice") or "replayed, no note"
    print(f"(the catch-up at {large:,}: {choice})")
    waits = ", ".join(f"{p['attach']['other_lists_wait_s']:.1f} s at {n:,}" for n, p in passes.items())
    print(f"(the group's other lists waited during the attach, in parts: {waits}; one attach each)")
    return {"sizes": {str(size): peaks for size, peaks in passes.items()}}

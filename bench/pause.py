"""How long the group's other lists wait while one list is copied, repaired or verified.

A small Leader list ("neighbour", 50 dossiers) is attached as a continuous replica, so it
shares the group of every continuous attach the cases time. While a timed command runs, a
writer on the Leader stamps one of its dossiers with the time (`clock_timestamp()`, in its
comment) every WRITE_EVERY_S, and a reader on the Subscriber computes, every POLL_EVERY_S, how
old the stamp it sees is. Both clusters run on this machine, on one clock. The oldest stamp
seen during the command is the longest the neighbour went without its Leader's changes: the
pause the command imposed on the group's other lists (plus up to one write interval).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.sites import Sites

WRITE_EVERY_S = 0.05
POLL_EVERY_S = 0.02
NEIGHBOUR_ROWS = 50


@dataclass
class Pause:
    """The oldest stamp seen, in seconds, once the watch has ended."""

    seconds: float = 0.0


def neighbour(sites: Sites) -> tuple[int, int]:
    """The neighbour list (Leader list, its replica), made and attached once per run."""
    if "pause neighbour" not in sites.lists:
        remote = sites.make_list(sites.leader, "pause neighbour")
        sites.fill(remote, NEIGHBOUR_ROWS)
        local = sites.make_list(sites.subscriber, "pause neighbour replica")
        sites.attach(remote, local, tty=False)
        sites.lists["pause neighbour"], sites.lists["pause neighbour replica"] = remote, local
    return sites.lists["pause neighbour"], sites.lists["pause neighbour replica"]


@contextmanager
def watched(sites: Sites) -> Iterator[Pause]:
    """Measure the neighbour's longest wait for its Leader's changes while the body runs."""
    remote, _local = neighbour(sites)
    stamped = sites.execute(
        sites.leader, "SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY id LIMIT 1", [remote]
    )[0]["id"]
    started = sites.execute(sites.leader, "SELECT clock_timestamp() AS t")[0]["t"]
    stop, fresh = threading.Event(), threading.Event()
    pause = Pause()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with sites.connect(sites.leader) as conn:
                while not stop.wait(WRITE_EVERY_S):
                    conn.execute(
                        "UPDATE dossier SET comment = clock_timestamp()::text WHERE id = %s", [stamped]
                    )
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    def read() -> None:
        try:
            with sites.connect(sites.subscriber) as conn:
                while not stop.wait(POLL_EVERY_S):
                    row = conn.execute(
                        "SELECT extract(epoch FROM clock_timestamp() - comment::timestamptz) AS age "
                        "FROM dossier WHERE id = %s AND comment ~ '^[0-9]{4}-' "
                        "AND comment::timestamptz > %s",
                        [stamped, started],
                    ).fetchone()
                    if row is not None:  # a stamp of this watch: the neighbour streams
                        fresh.set()
                        pause.seconds = max(pause.seconds, float(row["age"]))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    try:
        if not fresh.wait(60):
            raise RuntimeError("the pause neighbour's replica saw no change of its Leader list in 60 s")
        yield pause
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]

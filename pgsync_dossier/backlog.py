"""Replay a stream's backlog, or repair its lists in place instead. Pure: no database code.

A group whose stream has been stopped a long time (a window closed for weeks, a Subscriber
down) owes its lists every change the Leader made meanwhile. Replaying them costs the
Leader's decoding of all the WAL written since (whatever it touched) and the Subscriber's
row-by-row apply; an in-place repair costs a digest scan of the lists on both sides plus a
copy of the rows that differ. Past a backlog of about REPAIR_ABOVE times the size of the
group's lists (their rows' stored bytes, subscriber.lists_bytes), the repair is the cheaper,
and the slot is moved on to the present instead (groups.heal, as after a lost slot). The
figures behind the bound are in bench/README.md, "a million dossiers".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pgsync_dossier.errors import UsageError

#: Below this backlog the replay is always taken: the estimate itself (counting the lists'
#: rows) would cost more than any difference between the two.
MIN_BACKLOG_BYTES = 64 * 1024 * 1024
#: Repair in place when the backlog's WAL exceeds this many times the lists' size. Measured
#: as 0.5x the lists' share of their tables' size (indexes and all): the replay won at 0.3x,
#: the repair at 0.8x. The size is now their rows' stored bytes, which leaves out a purged
#: list's free space; on the benchmark's lists (two faces of 2,048 bytes per dossier) the old
#: measure is 1.42x the new one, so the same bound reads 0.7x.
REPAIR_ABOVE = 0.7
#: Overrides REPAIR_ABOVE (docs/configuration.md, "Tuning variables"): `inf` always replays, `0` repairs every
#: backlog past MIN_BACKLOG_BYTES (the benchmark measures each way so).
REPAIR_ABOVE_ENV = "PGSYNC_DOSSIER_REPAIR_ABOVE"


def repair_above() -> float:
    text = os.environ.get(REPAIR_ABOVE_ENV)
    if not text:
        return REPAIR_ABOVE
    try:
        return max(float(text), 0.0)
    except ValueError:
        raise UsageError(f"{REPAIR_ABOVE_ENV}={text!r} is not a number: unset it, or give e.g. 0.7") from None


@dataclass(frozen=True)
class BacklogChoice:
    backlog_bytes: int
    lists_bytes: int
    repair: bool
    bound: float = REPAIR_ABOVE

    @property
    def note(self) -> str:
        """The choice as the sync history and the log show it."""
        sizes = f"a backlog of {_mb(self.backlog_bytes)} of WAL against lists of {_mb(self.lists_bytes)}"
        if self.repair:
            return (
                f"{sizes} (over {self.bound:g}x): slot moved on, lists repaired in place instead of replayed"
            )
        if math.isinf(self.bound):
            return f"{sizes} ({REPAIR_ABOVE_ENV}=inf): replayed"
        return f"{sizes} (at most {self.bound:g}x): replayed"


def worth_estimating(backlog_bytes: int | None) -> bool:
    return backlog_bytes is not None and backlog_bytes >= MIN_BACKLOG_BYTES


def choose(backlog_bytes: int, lists_bytes: int, bound: float | None = None) -> BacklogChoice:
    above = repair_above() if bound is None else bound
    return BacklogChoice(backlog_bytes, lists_bytes, backlog_bytes > above * lists_bytes, above)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MB"

"""Deadlines that cover a whole command, and waits that react quickly. Pure: no database code.

A command gets one Deadline; every wait inside it asks the same object how long is left, so
`sync --all --timeout 90` ends within about 90 seconds however many waits it makes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

FIRST_POLL_S = 0.002
MAX_POLL_S = 0.1


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if math.isnan(seconds) or seconds <= 0:
            raise ValueError(f"a timeout must be a positive number of seconds, not {seconds}")
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self._end

    def at_most(self, seconds: float) -> Deadline:
        """A deadline for one step: `seconds` from now, but never past this one."""
        return Deadline(max(min(seconds, self.remaining()), 1e-3), self._clock)

    @contextmanager
    def not_counting(self, seconds: float) -> Iterator[Deadline]:
        """Work this deadline must not cut short (a copy or repair a sync chose, whose length
        follows the data): it gets its own deadline, `seconds` from now or this one's end if
        later, and the time it takes is added back to this one. A deadline that cut it short
        would end it in a rollback, and every later attempt the same way."""
        began = self._clock()
        try:
            yield Deadline(max(seconds, self.remaining(), 1e-3), self._clock)
        finally:
            self._end += self._clock() - began


def backoff(first: float = FIRST_POLL_S, ceiling: float = MAX_POLL_S) -> Iterator[float]:
    """Sleep lengths for a poll: short at first (a barrier is often reached in milliseconds),
    then growing, so a long wait does not hammer the server."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 1.5, ceiling)


def poll(
    check: Callable[[], T | None], deadline: Deadline, sleep: Callable[[float], None] = time.sleep
) -> T | None:
    """Call `check` until it returns something other than None, or the deadline passes
    (then None). `check` runs at least once."""
    for delay in backoff():
        result = check()
        if result is not None:
            return result
        if deadline.expired():
            return None
        sleep(min(delay, deadline.remaining()))
    return None  # pragma: no cover - backoff() never ends

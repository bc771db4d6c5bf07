"""What a group's catalog row says about its stream: the schedule it follows and the facts
`window.should_stream` decides on.

Pure over a `catalog.Group`, so a reader (status, /metrics) can show a group's window
without importing the write path (sync, scheduler, groups) that acts on it.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from pgsync_dossier.schedule import Schedule
from pgsync_dossier.window import StreamFacts

if TYPE_CHECKING:
    from pgsync_dossier.catalog import Group

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Schedule:
    return Schedule.parse(text)


def group_schedule(group: Group) -> Schedule | None:
    """The group's effective schedule (its own, else its Leader's); None when it streams
    continuously or when the schedule cannot be used (logged: the group then streams)."""
    text = group.effective_schedule
    if text is None:
        return None
    try:
        return _parse(text)
    except ValueError:
        log.warning("group %s: ignoring an unusable schedule %r", group.name, text)
        return None


def stream_facts(
    group: Group, *, window_open: bool = False, models_match: bool = True, pausing_for: str = "copying"
) -> StreamFacts:
    return StreamFacts(
        windowed=group.effective_schedule is not None,
        window_open=window_open,
        copying_list=group.copying_list_id,
        paused_until=group.paused_until,
        models_match=models_match,
        pausing_for=pausing_for,
    )

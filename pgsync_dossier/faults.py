"""Named fault points: where a test may have this process killed, as `kill -9` would.

Every step that changes state on either side is followed by a point. The fault suite arms one
through the environment (PGSYNC_DOSSIER_FAULT=copy.copied) and runs a real command, which
dies there with SIGKILL; the next command must then converge. Pure: no database code. When
the variable is unset (always, outside tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "PGSYNC_DOSSIER_FAULT"

#: Every point, in the order an attach (then a detach, a sync) passes them.
POINTS = (
    "attach.link_recorded",  # the link row is committed; nothing on the Leader yet
    "group.registered",  # the Leader's publication and registration exist; no subscription yet
    "group.subscribed",  # the subscription and its slot exist, disabled
    "copy.paused",  # the group's stream is stopped for the copy
    "copy.widened",  # the Leader's filter names the new list
    "copy.first_table",  # one table of a direct copy is committed, the other is not
    "copy.copied",  # the rows are in; the link is not yet marked ready
    "sync.window_open",  # the subscription is enabled for the barrier
    "detach.narrowed",  # the Leader's filter no longer names the list; it is still mapped here
    "detach.group_dropped",  # the last list's stream is dropped; the catalog still has it
)


def point(name: str) -> None:
    """Die here (SIGKILL) when this point is armed."""
    armed = os.environ.get(FAULT_ENV)
    if armed and name in armed.split(","):
        os.kill(os.getpid(), signal.SIGKILL)

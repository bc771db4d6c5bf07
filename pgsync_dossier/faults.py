"""Named fault points: where a test may have this process killed, as `kill -9` would.

Every step that changes state on either side is followed by a point. The fault suite arms one
through the environment (PGSYNC_DOSSIER_FAULT=copy.copied) and runs a real command, which
dies there with SIGKILL; the next command must then converge. `NAME:raise` raises an
unexpected exception there instead (what a bug would do: the CLI writes a crash report), and
`NAME:pause` holds the process there for PAUSE_S seconds (so that a test can start a racing
command at that exact step).

Besides the kill points there are blinds (BLINDS), armed the same way: a blind does not kill,
it makes a check lie. `verify.blind` makes `verify` report every list it compared as equal,
so that a harness can prove that its own judge (an oracle that never asks the product) catches
a product that grades itself wrongly: evidence that would pass a blinded verify is no evidence.
Pure: no database code. When the variable is unset (always, outside tests) a point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

FAULT_ENV = "PGSYNC_DOSSIER_FAULT"
PAUSE_S = 3.0

#: Every point, in the order an attach (then a detach, a sync) passes them.
POINTS = (
    "enrollment.stored",  # a new Leader password is kept here; the Leader does not know it yet
    "attach.link_recorded",  # the link row is committed; nothing on the Leader yet
    "group.registered",  # the Leader's publication and registration exist; no subscription yet
    "group.subscribed",  # the subscription and its slot exist, disabled
    "copy.paused",  # the group's stream is stopped for the copy
    "copy.widened",  # the Leader's filter names the new list
    "copy.first_table",  # one table of a direct copy is committed, the other is not
    "copy.written",  # the list's rows are in; the group's other lists are not settled yet
    "copy.copied",  # the rows are in; the link is not yet marked ready
    "repair.paused",  # an in-place repair has paused the stream; nothing fixed yet
    "repair.fixed",  # the list is fixed; its link still owes the repair
    "sync.window_open",  # the subscription is enabled for the barrier
    "detach.narrowed",  # the Leader's filter no longer names the list; it is still mapped here
    "detach.group_dropped",  # the last list's stream is dropped; the catalog still has it
)


#: Blinds: armed like the points, but they make a check report what it did not find instead of
#: killing the process. Kept apart from POINTS, which lists only where a process may be killed
#: (the fault suite kills at each of those and expects the next command to converge).
VERIFY_BLIND = "verify.blind"  # verify reports every compared list equal, with no differences
BLINDS = (VERIFY_BLIND,)


class InjectedFault(RuntimeError):
    """The unexpected error a `NAME:raise` fault point raises."""


def point(name: str) -> None:
    """Die here (SIGKILL) when this point is armed; raise InjectedFault when armed to raise."""
    armed = os.environ.get(FAULT_ENV)
    if not armed:
        return
    chosen = armed.split(",")
    if name in chosen:
        os.kill(os.getpid(), signal.SIGKILL)
    if f"{name}:raise" in chosen:
        raise InjectedFault(f"fault injected at {name}")
    if f"{name}:pause" in chosen:
        time.sleep(PAUSE_S)


def blinded(name: str) -> bool:
    """Whether the blind `name` (one of BLINDS) is armed: the caller must then report its check
    as passed whatever it found. Only a self-test arms one, to show its judge is not fooled."""
    if name not in BLINDS:
        raise ValueError(f"{name} is not a blind; the blinds are {', '.join(BLINDS)}")
    armed = os.environ.get(FAULT_ENV)
    if not armed:
        return False
    return name in armed.split(",")

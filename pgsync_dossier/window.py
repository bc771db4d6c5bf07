"""Whether a group's stream should run now, how to say why not, and how far behind it is.
Pure: no database code.

Every command that touches a subscription's enabled flag asks `should_stream`, so "enabled"
means the same thing after a sync, a copy, a probe or a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StreamFacts:
    """What decides whether a group's subscription streams."""

    windowed: bool  # the group has a schedule (else it streams continuously)
    window_open: bool  # a sync of the group is running now and holds its window open
    copying_list: int | None  # a list of the group is being copied: the stream must wait
    paused_until: datetime | None
    models_match: bool  # False: paused, the Leader's face model (or schema) differs from this node's
    pausing_for: str = "copying"  # what the paused list gets: "copying" or "repairing"


def copy_pause_active(facts: StreamFacts, now: datetime) -> bool:
    """A copy pauses the stream, for as long as its own deadline at most: a crashed copy must
    not stop the group's other lists forever."""
    return facts.copying_list is not None and (facts.paused_until is None or now < facts.paused_until)


def should_stream(facts: StreamFacts, now: datetime) -> bool:
    if copy_pause_active(facts, now) or not facts.models_match:
        return False
    return facts.window_open or not facts.windowed


def stream_note(facts: StreamFacts, now: datetime) -> str:
    """One line for status: what the group's stream is doing and why."""
    if copy_pause_active(facts, now):
        return f"paused: {facts.pausing_for} list {facts.copying_list}"
    if not facts.models_match:
        return "paused: face models differ"
    if facts.window_open:
        return "streaming (window open)"
    return "between windows" if facts.windowed else "streaming"


def face_model_message(leader_node: str, leader_model: str, own_model: str) -> str:
    return (
        f"paused: the Leader ({leader_node}) now uses face model {leader_model!r}, this Subscriber "
        f"{own_model!r}; align the models, then sync again"
    )


def lag_seconds(
    leader_seq: int | None, leader_now: datetime | None, seen_seq: int | None, seen_at: datetime | None
) -> float | None:
    """How old the newest Leader state this replica has seen is, when it is behind; else 0.

    leader_seq/leader_now: the group's heartbeat on the Leader and the Leader's clock;
    seen_seq/seen_at: the heartbeat as it reached this Subscriber (None: not yet)."""
    if leader_seq is None or leader_now is None or seen_seq is None or seen_at is None:
        return None
    if seen_seq >= leader_seq:
        return 0.0
    behind: float = (leader_now - seen_at).total_seconds()
    return round(behind, 3)

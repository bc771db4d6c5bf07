"""Prometheus text exposition, named after the PostgreSQL exporter's habits.

Metric names carry their unit (`_bytes`, `_seconds`, `_timestamp_seconds`), labels identify
the link (`local_list`, `remote_list`, `leader`) on a Subscriber and the stream (`subscriber`,
`group`) on a Leader (a slot that holds every stream back: `slot`, `reason`), and a state is a
one-hot gauge. deploy/ holds alerts and a dashboard
built on exactly these families (SUBSCRIBER_METRICS, LEADER_METRICS; a test keeps them true).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pgsync_dossier import catalog, pg, standby, status
from pgsync_dossier.config import Config
from pgsync_dossier.leader_install import RegisteredGroup, registered_groups
from pgsync_dossier.models import LINK_STATES
from pgsync_dossier.schedule import Schedule
from pgsync_dossier.status import StatusRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: pg_replication_slots.wal_status values.
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")

T = TypeVar("T")
#: A sample's value (None: the family has no sample for this row).
Value = int | float | bool | None
Labels = dict[str, object]
#: (family, help, value of one row or None to skip it)
Gauge = tuple[str, str, Callable[[T], Value]]


@dataclass(frozen=True)
class LinkHistory:
    """What /metrics shows of a link beyond its status row: the sync history and the
    schedules' longest gaps, as numbers."""

    last_success: float | None  # when the last successful sync ended (epoch seconds)
    failures: int  # failed syncs in the last 30 days
    last_heal_at: float | None
    sync_interval: float | None
    verify_interval: float | None


@dataclass(frozen=True)
class LinkSample:
    """One link as /metrics samples it: its status row and its history."""

    row: StatusRow
    history: LinkHistory


def _timestamp(at: datetime | None) -> float | None:
    return at.timestamp() if at else None


_LINK_GAUGES: tuple[Gauge[LinkSample], ...] = (
    ("pgsync_dossier_link_enabled", "1 when the link's subscription is streaming", lambda s: s.row.enabled),
    (
        "pgsync_dossier_leader_available",
        "1 when the Leader was reachable at the last probe",
        lambda s: s.row.leader_available,
    ),
    (
        "pgsync_dossier_link_lag_bytes",
        "WAL written on the Leader since the slot last confirmed",
        lambda s: s.row.lag_bytes,
    ),
    (
        "pgsync_dossier_link_lag_seconds",
        "Age of the newest Leader heartbeat not yet applied",
        lambda s: s.row.lag_seconds,
    ),
    (
        "pgsync_dossier_link_leader_time_reached_timestamp_seconds",
        "The Leader's clock at the newest heartbeat applied: everything committed before it is here",
        lambda s: _timestamp(s.row.leader_time_reached),
    ),
    (
        "pgsync_dossier_link_retained_wal_bytes",
        "WAL retained on the Leader by the link's slot",
        lambda s: s.row.retained_wal_bytes,
    ),
    ("pgsync_dossier_link_dossiers", "Dossiers in the replica list", lambda s: s.row.dossiers),
    ("pgsync_dossier_link_leader_dossiers", "Dossiers in the Leader list", lambda s: s.row.leader_dossiers),
    (
        "pgsync_dossier_link_apply_errors",
        "Copy and apply errors since the stats were reset",
        lambda s: s.row.apply_errors,
    ),
    (
        "pgsync_dossier_link_apply_conflicts",
        "Apply conflicts counted (PostgreSQL 18+)",
        lambda s: s.row.apply_conflicts,
    ),
    (
        "pgsync_dossier_link_last_sync_success_timestamp_seconds",
        "When the last successful sync ended",
        lambda s: s.history.last_success,
    ),
    (
        "pgsync_dossier_link_last_heal_timestamp_seconds",
        "When the list's stream was last healed (a lost or missing slot, a stream consumed elsewhere)",
        lambda s: s.history.last_heal_at,
    ),
    (
        "pgsync_dossier_link_wal_retention_warning",
        "1 when a closed window's slot holds more than 80% of the WAL the Leader allows it",
        lambda s: s.row.warning is not None,
    ),
    # A gauge, not a counter: history older than 30 days is pruned, so the count can go down.
    (
        "pgsync_dossier_link_recent_sync_failures",
        "Failed syncs in the last 30 days",
        lambda s: s.history.failures,
    ),
    (
        "pgsync_dossier_link_sync_interval_seconds",
        "Windowed links only: the longest wait between two windows of the schedule",
        lambda s: s.history.sync_interval,
    ),
    (
        "pgsync_dossier_link_last_verified_timestamp_seconds",
        "When the list was last proven equal to its Leader list, or found to differ (verify_schedule)",
        lambda s: _timestamp(s.row.verified_at),
    ),
    (
        "pgsync_dossier_link_verified_equal",
        "1 when the list's last verification found it equal to its Leader list, 0 when it differed",
        lambda s: None if s.row.verified == "never" else s.row.verified == "equal",
    ),
    (
        "pgsync_dossier_link_verified_differences",
        "Rows (dossiers and faces) missing, extra or changed at the list's last verification",
        lambda s: s.row.verified_differences,
    ),
    (
        "pgsync_dossier_link_verify_interval_seconds",
        "The longest wait between two occurrences of verify_schedule (absent: verification off)",
        lambda s: s.history.verify_interval,
    ),
)

_SLOT_GAUGES: tuple[Gauge[RegisteredGroup], ...] = (
    (
        "pgsync_dossier_leader_slot_exists",
        "1 when the Subscriber group's slot exists (0: registered, slot missing)",
        lambda g: g.slot_exists,
    ),
    (
        "pgsync_dossier_leader_slot_active",
        "1 while the Subscriber streams from the slot",
        lambda g: g.active,
    ),
    (
        "pgsync_dossier_leader_slot_retained_wal_bytes",
        "WAL the slot keeps on the Leader",
        lambda g: g.retained_bytes,
    ),
    (
        "pgsync_dossier_leader_slot_lag_bytes",
        "WAL written since the Subscriber last confirmed",
        lambda g: g.lag_bytes,
    ),
    (
        "pgsync_dossier_leader_slot_last_confirmed_timestamp_seconds",
        "When the Subscriber last confirmed: its last reply while streaming, else when the slot "
        "went idle (PostgreSQL 17+)",
        lambda g: _timestamp(g.last_confirmed),
    ),
    ("pgsync_dossier_leader_group_lists", "Lists the Subscriber group replicates", lambda g: len(g.lists)),
)

_STANDBY_GAUGES: tuple[Gauge[standby.StandbySlotBlocker], ...] = (
    (
        "pgsync_dossier_leader_standby_slot_blocking",
        "1 for each slot synchronized_standby_slots names that every failover-slot stream waits for: "
        "missing, not physical, or inactive (PostgreSQL 17+)",
        lambda _blocker: 1,
    ),
)

SUBSCRIBER_METRICS = (
    "pgsync_dossier_link_state",
    "pgsync_dossier_link_wal_status",
    *(name for name, _, _ in _LINK_GAUGES),
)
LEADER_METRICS = (
    "pgsync_dossier_leader_slot_wal_status",
    *(name for name, _, _ in _SLOT_GAUGES),
    *(name for name, _, _ in _STANDBY_GAUGES),
)


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Labels) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _number(value: int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def one_hot(
        self,
        name: str,
        help_text: str,
        rows: Iterable[tuple[Labels, str | None]],
        label: str,
        values: tuple[str, ...],
    ) -> None:
        self._family(name, help_text)
        for labels, current in rows:
            if current is None:
                continue
            for value in values:
                self.lines.append(f"{name}{_labels({**labels, label: value})} {int(current == value)}")

    def gauges(self, gauges: Sequence[Gauge[T]], rows: list[tuple[Labels, T]]) -> None:
        for name, help_text, value_of in gauges:
            self._family(name, help_text)
            for labels, row in rows:
                value = value_of(row)
                if value is not None:
                    self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def _family(self, name: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} gauge")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(config: Config) -> str:
    """A Subscriber's links, a Leader's Subscriber streams, or a relay's both."""
    if config.role == "leader":
        return render_leader(config)
    if config.role == "relay":
        return render_links(config) + render_leader(config)
    return render_links(config)


def render_links(config: Config) -> str:
    samples = link_samples(config)
    labelled = [
        ({"local_list": s.row.local_list, "remote_list": s.row.remote_list, "leader": s.row.leader or ""}, s)
        for s in samples
    ]
    out = _Exposition()
    out.one_hot(
        "pgsync_dossier_link_state",
        "1 for the link's current state",
        ((labels, s.row.state) for labels, s in labelled),
        "state",
        LINK_STATES,
    )
    out.one_hot(
        "pgsync_dossier_link_wal_status",
        "1 for the wal_status of the link's slot on the Leader",
        ((labels, s.row.wal_status) for labels, s in labelled),
        "wal_status",
        WAL_STATUSES,
    )
    out.gauges(_LINK_GAUGES, labelled)
    return out.text()


def link_samples(config: Config) -> list[LinkSample]:
    """Each link's status row with its history."""
    rows = status.links(config)
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        by_group = catalog.run_history(conn)
        heals_by_group = catalog.last_heals(conn)
        names = {group.name: group.id for group in catalog.groups(conn)}
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    samples = []
    for row in rows:
        group_id = names.get(row.group, -1)
        history = by_group.get(group_id)
        heal = heals_by_group.get(group_id)
        samples.append(
            LinkSample(
                row,
                LinkHistory(
                    last_success=float(history.last_success) if history and history.last_success else None,
                    failures=history.failures if history else 0,
                    last_heal_at=_timestamp(heal.finished_at) if heal else None,
                    sync_interval=_sync_interval(row.schedule, hour),
                    verify_interval=_sync_interval(row.verify_schedule, hour),
                ),
            )
        )
    return samples


@functools.lru_cache(maxsize=64)
def _sync_interval(schedule: str | None, hour: datetime) -> float | None:
    """Cached per hour: a dense schedule takes tens of milliseconds to walk."""
    if schedule is None:
        return None
    try:
        gap = Schedule.parse(schedule).longest_gap(hour)
    except ValueError:
        return None
    return gap.total_seconds() if gap is not None else None


def render_leader(config: Config) -> str:
    """What the Leader sees of each Subscriber stream (group) it serves."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        catalog.require_role(conn, "leader", "the Leader's /metrics")
        groups = registered_groups(conn)
        blockers = standby.standby_slot_blockers(conn)
    labelled: list[tuple[Labels, RegisteredGroup]] = [
        ({"subscriber": group.subscriber_node, "group": group.name}, group) for group in groups
    ]
    out = _Exposition()
    out.one_hot(
        "pgsync_dossier_leader_slot_wal_status",
        "1 for the wal_status of the Subscriber group's slot",
        ((labels, group.wal_status) for labels, group in labelled),
        "wal_status",
        WAL_STATUSES,
    )
    out.gauges(_SLOT_GAUGES, labelled)
    out.gauges(_STANDBY_GAUGES, [({"slot": b.slot, "reason": b.reason}, b) for b in blockers])
    return out.text()

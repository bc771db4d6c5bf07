"""Prometheus text exposition, named after the PostgreSQL exporter's habits.

Metric names carry their unit (`_bytes`, `_seconds`, `_timestamp_seconds`), labels identify
the link (`local_list`, `remote_list`, `leader`) on a Subscriber and the stream (`subscriber`,
`group`) on a Leader (a slot that holds every stream back: `slot`, `reason`), and a state is a
one-hot gauge. deploy/ holds alerts and a dashboard
built on exactly these families (SUBSCRIBER_METRICS, LEADER_METRICS; a test keeps them true).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pgsync_dossier import catalog, pg, standby
from pgsync_dossier.config import Config
from pgsync_dossier.leader import registered_groups
from pgsync_dossier.models import LINK_STATES
from pgsync_dossier.node import require_role
from pgsync_dossier.schedule import Schedule
from pgsync_dossier.status import status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: pg_replication_slots.wal_status values.
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")

Row = dict[str, Any]
#: (family, help, value of one row or None to skip it)
Gauge = tuple[str, str, Callable[[Row], Any]]


def _key(name: str) -> Callable[[Row], Any]:
    return lambda row: row[name]


_LINK_GAUGES: tuple[Gauge, ...] = (
    ("pgsync_dossier_link_enabled", "1 when the link's subscription is streaming", _key("enabled")),
    (
        "pgsync_dossier_leader_available",
        "1 when the Leader was reachable at the last probe",
        _key("leader_available"),
    ),
    (
        "pgsync_dossier_link_lag_bytes",
        "WAL written on the Leader since the slot last confirmed",
        _key("lag_bytes"),
    ),
    (
        "pgsync_dossier_link_lag_seconds",
        "Age of the newest Leader heartbeat not yet applied",
        _key("lag_seconds"),
    ),
    (
        "pgsync_dossier_link_retained_wal_bytes",
        "WAL retained on the Leader by the link's slot",
        _key("retained_wal_bytes"),
    ),
    ("pgsync_dossier_link_dossiers", "Dossiers in the replica list", _key("dossiers")),
    ("pgsync_dossier_link_leader_dossiers", "Dossiers in the Leader list", _key("leader_dossiers")),
    (
        "pgsync_dossier_link_apply_errors",
        "Copy and apply errors since the stats were reset",
        _key("apply_errors"),
    ),
    (
        "pgsync_dossier_link_apply_conflicts",
        "Apply conflicts counted (PostgreSQL 18+)",
        _key("apply_conflicts"),
    ),
    (
        "pgsync_dossier_link_last_sync_success_timestamp_seconds",
        "When the last successful sync ended",
        _key("last_success"),
    ),
    (
        "pgsync_dossier_link_last_heal_timestamp_seconds",
        "When the list's stream was last healed (a lost or missing slot, a stream consumed elsewhere)",
        _key("last_heal_at"),
    ),
    (
        "pgsync_dossier_link_wal_retention_warning",
        "1 when a closed window's slot holds more than 80% of the WAL the Leader allows it",
        lambda row: row["warning"] is not None,
    ),
    # A gauge, not a counter: history older than 30 days is pruned, so the count can go down.
    ("pgsync_dossier_link_recent_sync_failures", "Failed syncs in the last 30 days", _key("failures")),
    (
        "pgsync_dossier_link_sync_interval_seconds",
        "Windowed links only: the longest wait between two windows of the schedule",
        _key("sync_interval"),
    ),
    (
        "pgsync_dossier_link_last_verified_timestamp_seconds",
        "When the list was last proven equal to its Leader list, or found to differ (verify_schedule)",
        lambda row: row["verified_at"].timestamp() if row["verified_at"] else None,
    ),
    (
        "pgsync_dossier_link_verified_equal",
        "1 when the list's last verification found it equal to its Leader list, 0 when it differed",
        lambda row: None if row["verified"] == "never" else row["verified"] == "equal",
    ),
    (
        "pgsync_dossier_link_verified_differences",
        "Rows (dossiers and faces) missing, extra or changed at the list's last verification",
        _key("verified_differences"),
    ),
    (
        "pgsync_dossier_link_verify_interval_seconds",
        "The longest wait between two occurrences of verify_schedule (absent: verification off)",
        _key("verify_interval"),
    ),
)

_SLOT_GAUGES: tuple[Gauge, ...] = (
    (
        "pgsync_dossier_leader_slot_exists",
        "1 when the Subscriber group's slot exists (0: registered, slot missing)",
        _key("slot_exists"),
    ),
    ("pgsync_dossier_leader_slot_active", "1 while the Subscriber streams from the slot", _key("active")),
    (
        "pgsync_dossier_leader_slot_retained_wal_bytes",
        "WAL the slot keeps on the Leader",
        _key("retained_bytes"),
    ),
    (
        "pgsync_dossier_leader_slot_lag_bytes",
        "WAL written since the Subscriber last confirmed",
        _key("lag_bytes"),
    ),
    (
        "pgsync_dossier_leader_slot_last_confirmed_timestamp_seconds",
        "When the Subscriber last confirmed: its last reply while streaming, else when the slot "
        "went idle (PostgreSQL 17+)",
        lambda row: row["last_confirmed"].timestamp() if row["last_confirmed"] else None,
    ),
    ("pgsync_dossier_leader_group_lists", "Lists the Subscriber group replicates", lambda r: len(r["lists"])),
)

_STANDBY_GAUGES: tuple[Gauge, ...] = (
    (
        "pgsync_dossier_leader_standby_slot_blocking",
        "1 for each slot synchronized_standby_slots names that every failover-slot stream waits for: "
        "missing, not physical, or inactive (PostgreSQL 17+)",
        lambda row: 1,
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


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, Any]) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _number(value: Any) -> str:
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
        rows: Iterable[tuple[dict[str, Any], Any]],
        label: str,
        values: tuple[str, ...],
    ) -> None:
        self._family(name, help_text)
        for labels, current in rows:
            if current is None:
                continue
            for value in values:
                self.lines.append(f"{name}{_labels({**labels, label: value})} {int(current == value)}")

    def gauges(self, gauges: tuple[Gauge, ...], rows: list[tuple[dict[str, Any], Row]]) -> None:
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
    """A Subscriber's links, or a Leader's Subscriber streams."""
    if config.role == "leader":
        return render_leader(config)
    rows = [row for row in status(config) if row["state"] != "orphan-slot"]
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        by_group = catalog.run_history(conn)
        heals_by_group = catalog.last_heals(conn)
        names = {group.name: group.id for group in catalog.groups(conn)}
    now = datetime.now(UTC)
    for row in rows:
        group_id = names.get(row["group"], -1)
        history = by_group.get(group_id, {})
        heal = heals_by_group.get(group_id)
        row["last_success"] = float(history["last_success"]) if history.get("last_success") else None
        row["failures"] = history.get("failures", 0)
        row["last_heal_at"] = heal["finished_at"].timestamp() if heal else None
        hour = now.replace(minute=0, second=0, microsecond=0)
        row["sync_interval"] = _sync_interval(row["schedule"], hour)
        row["verify_interval"] = _sync_interval(row["verify_schedule"], hour)
    labelled = [
        (
            {
                "local_list": row["local_list"],
                "remote_list": row["remote_list"],
                "leader": row["leader"] or "",
            },
            row,
        )
        for row in rows
    ]
    out = _Exposition()
    out.one_hot(
        "pgsync_dossier_link_state",
        "1 for the link's current state",
        ((labels, row["state"]) for labels, row in labelled),
        "state",
        LINK_STATES,
    )
    out.one_hot(
        "pgsync_dossier_link_wal_status",
        "1 for the wal_status of the link's slot on the Leader",
        ((labels, row["wal_status"]) for labels, row in labelled),
        "wal_status",
        WAL_STATUSES,
    )
    out.gauges(_LINK_GAUGES, labelled)
    return out.text()


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
    with pg.connect(config.database_url, what="this Leader's database") as conn:
        require_role(conn, "leader", "the Leader's /metrics")
        groups = registered_groups(conn)
        blockers = standby.standby_slot_blockers(conn)
    labelled = [({"subscriber": group["subscriber_node"], "group": group["name"]}, group) for group in groups]
    out = _Exposition()
    out.one_hot(
        "pgsync_dossier_leader_slot_wal_status",
        "1 for the wal_status of the Subscriber group's slot",
        ((labels, group["wal_status"]) for labels, group in labelled),
        "wal_status",
        WAL_STATUSES,
    )
    out.gauges(_SLOT_GAUGES, labelled)
    out.gauges(_STANDBY_GAUGES, [({"slot": b.slot, "reason": b.reason}, {}) for b in blockers])
    return out.text()

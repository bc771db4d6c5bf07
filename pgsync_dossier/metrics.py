"""Prometheus text exposition of every link, named after the PostgreSQL exporter's habits.

Metric names carry their unit (`_bytes`, `_seconds`, `_timestamp_seconds`, `_total`), labels
identify the link (`local_list`, `remote_list`, `leader`), and a state is a one-hot gauge.
"""

from __future__ import annotations

from typing import Any

from pgsync_dossier import catalog, pg
from pgsync_dossier.config import Config
from pgsync_dossier.models import LINK_STATES
from pgsync_dossier.status import status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_GAUGES = (
    ("pgsync_dossier_link_enabled", "1 when the link's subscription is streaming", "enabled"),
    (
        "pgsync_dossier_leader_available",
        "1 when the Leader was reachable at the last probe",
        "leader_available",
    ),
    ("pgsync_dossier_link_lag_bytes", "WAL written on the Leader since the slot last confirmed", "lag_bytes"),
    ("pgsync_dossier_link_lag_seconds", "Age of the newest Leader heartbeat not yet applied", "lag_seconds"),
    (
        "pgsync_dossier_link_retained_wal_bytes",
        "WAL retained on the Leader by the link's slot",
        "retained_wal_bytes",
    ),
    ("pgsync_dossier_link_dossiers", "Dossiers in the replica list", "dossiers"),
    ("pgsync_dossier_link_leader_dossiers", "Dossiers in the Leader list", "leader_dossiers"),
    ("pgsync_dossier_link_apply_errors", "Copy and apply errors since the stats were reset", "apply_errors"),
    ("pgsync_dossier_link_apply_conflicts", "Apply conflicts counted (PostgreSQL 18+)", "apply_conflicts"),
)


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(row: dict[str, Any], **extra: Any) -> str:
    pairs = {
        "local_list": row["local_list"],
        "remote_list": row["remote_list"],
        "leader": row["leader"] or "",
    }
    pairs.update(extra)
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(config: Config) -> str:
    rows = [row for row in status(config) if row["state"] != "orphan-slot"]
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        by_group = catalog.run_history(conn)
        heals_by_group = catalog.last_heals(conn)
        names = {group.name: group.id for group in catalog.groups(conn)}
    history = {row["local_list"]: by_group.get(names.get(row["group"], -1), {}) for row in rows}
    heals = {row["local_list"]: heals_by_group.get(names.get(row["group"], -1)) for row in rows}
    lines: list[str] = []

    def family(name: str, help_text: str, kind: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("pgsync_dossier_link_state", "1 for the link's current state", "gauge")
    for row in rows:
        for state in LINK_STATES:
            lines.append(f"pgsync_dossier_link_state{_labels(row, state=state)} {int(row['state'] == state)}")
    for name, help_text, key in _GAUGES:
        family(name, help_text, "gauge")
        for row in rows:
            if row[key] is not None:
                lines.append(f"{name}{_labels(row)} {_number(row[key])}")
    family(
        "pgsync_dossier_link_last_sync_success_timestamp_seconds",
        "When the last successful sync ended",
        "gauge",
    )
    for row in rows:
        last = history.get(row["local_list"], {}).get("last_success")
        if last is not None:
            lines.append(
                f"pgsync_dossier_link_last_sync_success_timestamp_seconds{_labels(row)} {float(last)}"
            )
    family(
        "pgsync_dossier_link_last_heal_timestamp_seconds",
        "When the list's stream was last healed (a lost or missing slot, a stream consumed elsewhere)",
        "gauge",
    )
    for row in rows:
        heal = heals.get(row["local_list"])
        if heal is not None:
            at = heal["finished_at"].timestamp()
            lines.append(f"pgsync_dossier_link_last_heal_timestamp_seconds{_labels(row)} {at}")
    family(
        "pgsync_dossier_link_wal_retention_warning",
        "1 when a closed window's slot holds more than 80% of the WAL the Leader allows it",
        "gauge",
    )
    for row in rows:
        lines.append(
            f"pgsync_dossier_link_wal_retention_warning{_labels(row)} {int(row['warning'] is not None)}"
        )
    # A gauge, not a counter: history older than 30 days is pruned, so the count can go down.
    family("pgsync_dossier_link_recent_sync_failures", "Failed syncs in the last 30 days", "gauge")
    for row in rows:
        failures = history.get(row["local_list"], {}).get("failures", 0)
        lines.append(f"pgsync_dossier_link_recent_sync_failures{_labels(row)} {failures}")
    return "\n".join(lines) + "\n"

"""The typed status and verify rows: the JSON keys, their order, and the API model derived
from StatusRow (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgsync_dossier.status import SUBSCRIBER_FIELDS, OrphanSlot, StatusRow
from pgsync_dossier.verify import VerifyRow

#: `status --json` on a Subscriber, as docs/cli.md documents it.
DOCUMENTED = [
    "local_list",
    "local_list_name",
    "remote_list",
    "leader",
    "leader_url",
    "leader_host",
    "group",
    "state",
    "stream",
    "enabled",
    "leader_available",
    "dossiers",
    "faces",
    "leader_dossiers",
    "leader_faces",
    "lag_bytes",
    "lag_seconds",
    "leader_time_reached",
    "retained_wal_bytes",
    "wal_status",
    "copy",
    "apply_errors",
    "apply_conflicts",
    "schedule",
    "last_sync",
    "last_sync_ok",
    "next_sync",
    "last_heal",
    "verified",
    "verified_at",
    "verified_differences",
    "verify_schedule",
    "warning",
    "last_error",
]


def _row() -> StatusRow:
    values: dict[str, object] = dict.fromkeys(SUBSCRIBER_FIELDS)
    values.update(
        local_list=7,
        remote_list=3,
        leader_url="postgresql://leader/db",
        group="pgsync_x",
        state="ready",
        stream="streaming",
        enabled=True,
        leader_available=True,
        copy="done",
        verified="never",
        last_sync=datetime(2026, 1, 2, tzinfo=UTC),
    )
    return StatusRow(**values)  # type: ignore[arg-type]


def test_status_keys_are_the_documented_ones_in_order() -> None:
    assert list(SUBSCRIBER_FIELDS) == DOCUMENTED
    assert list(_row().as_json()) == DOCUMENTED


def test_an_orphan_slot_has_every_key_and_only_its_own_values() -> None:
    shown = OrphanSlot("postgresql://leader/db", "pgsync_old", "slot pgsync_old is still there").as_json()
    assert list(shown) == DOCUMENTED
    assert {key: value for key, value in shown.items() if value is not None} == {
        "leader_url": "postgresql://leader/db",
        "group": "pgsync_old",
        "state": "orphan-slot",
        "enabled": False,
        "last_error": "slot pgsync_old is still there",
    }


def test_the_api_model_is_derived_from_the_row() -> None:
    pytest.importorskip("pydantic")
    from pgsync_dossier.api.status_models import Link

    schema = Link.model_json_schema(by_alias=True)
    assert list(schema["properties"]) == DOCUMENTED and schema["title"] == "Link"
    assert schema["required"] == DOCUMENTED
    assert "description" in schema["properties"]["copy"]
    body = Link.of(_row()).model_dump(mode="json", by_alias=True)
    assert list(body) == DOCUMENTED and body["copy"] == "done" and body["last_sync"].startswith("2026-01-02")


def test_verify_rows_keep_their_keys() -> None:
    row = VerifyRow(7, 3, error="could not sync first: down")
    assert list(row.as_json()) == [
        "local_list",
        "remote_list",
        "dossiers",
        "faces",
        "leader_dossiers",
        "leader_faces",
        "match",
        "missing",
        "extra",
        "changed",
        "repaired",
        "error",
    ]

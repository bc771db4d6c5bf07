"""The schema revision the code names without Alembic is the head of alembic/versions."""

from __future__ import annotations

from pgsync_dossier import SCHEMA_REVISION, migrations


def test_the_code_names_the_head_revision() -> None:
    assert migrations.head_revision() == SCHEMA_REVISION

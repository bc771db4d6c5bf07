"""The models describe what the migrations build (the drift test compares the rest on a database)."""

from __future__ import annotations

import runpy
from pathlib import Path

from pgsync_dossier import models

MIGRATIONS = Path(__file__).resolve().parents[2] / "alembic" / "versions"


def test_content_hash_expressions_are_the_migrations() -> None:
    """Alembic does not compare generated columns' expressions: this test does."""
    migration = runpy.run_path(str(MIGRATIONS / "0005_content_hashes.py"))
    assert migration["DOSSIER_HASH"] == models.DOSSIER_CONTENT_HASH
    assert migration["FACE_HASH"] == models.FACE_CONTENT_HASH

"""Shared test options. Cluster fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-bin",
        default=None,
        help="PostgreSQL server bin/ directory (default: $PGSYNC_DOSSIER_PG_BIN, the embedded "
        "wheel, pg_config --bindir, system paths)",
    )

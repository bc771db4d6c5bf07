"""Shared test options and fixtures: the cluster harness (tests/harness.py) serves the
integration and the fault tests alike."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.harness"]

_NEEDS_CLUSTERS = ("integration", "faults")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-bin",
        default=None,
        help="PostgreSQL server bin/ directory (default: $PGSYNC_DOSSIER_PG_BIN, the embedded "
        "wheel, pg_config --bindir, system paths)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        for kind in _NEEDS_CLUSTERS:
            if here / kind in Path(str(item.fspath)).parents:
                item.add_marker(getattr(pytest.mark, kind))

"""Fixtures of the HTTP API tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pgsync_dossier import config as config_module
from tests.harness import Site


@pytest.fixture
def client(sites: dict[str, Site]) -> Iterator[Any]:
    """The Subscriber's HTTP API in process (FastAPI's TestClient); each test brings its token."""
    pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
    from fastapi.testclient import TestClient

    from pgsync_dossier.api import create_app

    app = create_app(config_module.load(sites["subscriber_a"].config_path))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client

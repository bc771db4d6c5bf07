"""Fuzz the API from its own OpenAPI document: no 500s, no leaked token, no state change from
a rejected request. Runs against real clusters, with a bounded number of examples."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.core import NotSet  # noqa: E402

from pgsync_dossier import config as config_module  # noqa: E402
from pgsync_dossier.api import create_app  # noqa: E402
from tests.harness import TOKEN, Site, add_dossiers, make_api_token, make_list  # noqa: E402


@pytest.fixture
def api_token(sites: dict[str, Site]) -> str:
    return make_api_token(sites["subscriber_a"])


@pytest.fixture
def fuzz_sites(sites: dict[str, Site]) -> Iterator[dict[str, Site]]:
    """A Leader list and an empty Subscriber list whose ids the fuzzer will hit (small ints)."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote = make_list(leader.node, "L")
    add_dossiers(leader.node, remote, 3)
    make_list(sub.node, "T")
    yield sites


def _snapshot(sites: dict[str, Site]) -> tuple[Any, ...]:
    sub, leader = sites["subscriber_a"].node, sites["leader"].node
    return (
        sub.execute("SELECT local_list_id, remote_list_id, state FROM pgsync.link ORDER BY 1"),
        sub.execute("SELECT subname FROM pg_subscription ORDER BY 1"),
        sub.execute("SELECT count(*) AS n FROM dossier"),
        leader.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgsync%' ORDER BY 1"
        ),
        leader.execute("SELECT pubname FROM pg_publication ORDER BY 1"),
    )


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_api_fuzz(fuzz_sites: dict[str, Site], api_token: str, mode: str) -> None:
    """Every operation, with data valid per the schema (positive) and invalid (negative)."""
    app = create_app(config_module.load(fuzz_sites["subscriber_a"].config_path))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    generation_mode = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    unsatisfiable: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=generation_mode))
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            before = _snapshot(fuzz_sites)
            auth = {"Authorization": f"Token {api_token}"}
            response = case.call(headers=auth if random_auth(case) else None)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            assert TOKEN not in response.text and api_token not in response.text
            if response.status_code >= 400:
                assert _snapshot(fuzz_sites) == before, f"a rejected {where} changed state"

        try:
            check()
        except Unsatisfiable:
            if mode != "negative":
                raise
            unsatisfiable.append(f"{operation.method.upper()} {operation.path}")
    # Only operations without parameters or body have no invalid form to send.
    assert set(unsatisfiable) <= {"GET /healthz", "GET /sync/dossier-lists/", "GET /metrics"}


def _stable(value: Any) -> Any:
    """A part of a case as it reads the same in every process: schemathesis's "not set" marker
    reprs with its memory address, so it stands as None here."""
    return None if isinstance(value, NotSet) else value


def random_auth(case: Any) -> bool:
    """Most cases carry the API token; the ones without it must be refused (and change nothing).
    Which ones is decided by the case alone (a CRC of what it sends), the same in every process:
    `hash()` of a str changes with PYTHONHASHSEED, so a failure could not be replayed."""
    sent = (case.method, case.formatted_path, _stable(case.query), _stable(case.body))
    return zlib.crc32(repr(sent).encode()) % 5 != 0

"""Shared test options and fixtures: the cluster harness (tests/harness.py) serves the
integration and the fault tests alike.

Two rules of CI live here, so that a green run cannot hide a missing suite:
- `both_versions`: the tests whose code, or PostgreSQL's behaviour under it, differs between
  server versions. CI runs the whole suite on one version and these on the other as well.
- With PGSYNC_DOSSIER_STRICT_SKIPS=1 (CI sets it) any skip whose reason is not in
  ALLOWED_SKIPS fails the run: a test that cannot run because something is not installed is a
  hole in the evidence, not a pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgsync_dossier.clusters import find_bindir, server_version
from pgsync_dossier.errors import ClusterError

pytest_plugins = ["tests.harness"]

_NEEDS_CLUSTERS = ("integration", "faults")
STRICT_SKIPS_ENV = "PGSYNC_DOSSIER_STRICT_SKIPS"

#: The only skips CI accepts, by a piece of their reason and the server's major version, each
#: with why it leaves no hole.
ALLOWED_SKIPS = {
    ("this PostgreSQL build has no TLS", 18): "the embedded 18 is built without OpenSSL; the test is "
    "marked both_versions and runs on Debian's 15, which has it",
}

#: Modules whose every test runs on both versions: the code under them branches on the server
#: version (failover slots, SCRAM-only logins, stopping workers at DISABLE, origins), or they
#: prove a fact of PostgreSQL's own behaviour that a version may change.
BOTH_VERSIONS_MODULES = {
    "test_leader_failover.py",  # failover slots (17+) and what a promotion leaves
    "test_relay_failover.py",  # what a promotion leaves on both hops of a relay
    "test_least_privilege.py",  # SCRAM-only logins, the Leader API's 17+ branch, TLS
    "test_schedules.py",  # windows: 15 wakes no worker at DISABLE
    "test_healing.py",  # lost slots, a consumed stream, the restart point
    "test_migrations.py",  # the schema on each server
    "test_upgrade.py",  # upgrades of the catalog
    "test_replication_facts.py",  # PostgreSQL's behaviour the design rests on
    "test_relay_facts.py",  # what cascading through a relay rests on
    "test_relays.py",  # cascading: 15 has no origin option
    "test_replication.py",  # the stream itself
    "test_attach.py",  # the copy
    "test_oracle.py",  # the judge of the others
    "test_schema_skew.py",  # a rolling upgrade: what the apply of each version accepts
}
#: Single tests that run on both versions (module::function, every parameter of it): the capacity limits
#: (18 counts origins apart), what 15 does differently at DISABLE (a window or a copy's pause
#: killed half-way), and the apply conflicts only 18 counts.
BOTH_VERSIONS_TESTS = (
    "test_groups.py::test_thirty_lists_on_a_subscriber_with_default_worker_settings",
    "test_groups.py::test_no_room_for_another_stream_is_refused_with_the_fix",
    "test_groups.py::test_a_sync_leaves_a_streaming_subscription_alone",
    "test_groups.py::test_a_swap_between_two_replicated_lists_in_one_transaction",
    "test_kills.py::test_a_window_killed_open_is_closed_by_tick",
    "test_kills.py::test_a_copy_killed_mid_way_is_finished_by_tick",
    "test_kills.py::test_a_copy_killed_before_it_settles_keeps_a_move_made_meanwhile",
    "test_outages.py::test_a_server_stopped_mid_copy",
    "test_status.py::test_apply_conflicts_are_counted_where_postgresql_counts_them",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-bin",
        default=None,
        help="PostgreSQL server bin/ directory (default: $PGSYNC_DOSSIER_PG_BIN, the embedded "
        "wheel, pg_config --bindir, system paths)",
    )


def _check_both_versions_names(here: Path) -> None:
    """Every module and test named above exists: a renamed one would silently leave the second
    version's run."""
    for module in BOTH_VERSIONS_MODULES:
        if not list(here.rglob(module)):
            raise pytest.UsageError(f"BOTH_VERSIONS_MODULES names a module that does not exist: {module}")
    for entry in BOTH_VERSIONS_TESTS:
        module, function = entry.split("::")
        if not any(f"def {function}(" in path.read_text() for path in here.rglob(module)):
            raise pytest.UsageError(f"BOTH_VERSIONS_TESTS names a test that does not exist: {entry}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    _check_both_versions_names(here)
    for item in items:
        path = Path(str(item.fspath))
        for kind in _NEEDS_CLUSTERS:
            if here / kind in path.parents:
                item.add_marker(getattr(pytest.mark, kind))
        test = f"{path.name}::{item.name.split('[')[0]}"
        if path.name in BOTH_VERSIONS_MODULES or test in BOTH_VERSIONS_TESTS:
            item.add_marker(pytest.mark.both_versions)


def _server_major(config: pytest.Config) -> int | None:
    """The major version of the servers this run starts (None where there are none)."""
    try:
        return int(server_version(find_bindir(config.getoption("--pg-bin"))).split(".")[0])
    except ClusterError:
        return None


#: (node id, reason) of every skipped test of this run.
_SKIPPED: list[tuple[str, str]] = []


def _strict() -> bool:
    return os.environ.get(STRICT_SKIPS_ENV) == "1"


def _record_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _SKIPPED.append((report.nodeid, reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module skipped whole (`pytest.importorskip` at its top) is a collection report."""
    _record_skip(report)


def _unexpected_skips(config: pytest.Config) -> list[tuple[str, str]]:
    major = _server_major(config)
    allowed = [piece for piece, version in ALLOWED_SKIPS if version == major]
    return [(nodeid, reason) for nodeid, reason in _SKIPPED if not any(piece in reason for piece in allowed)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    unexpected = _unexpected_skips(config) if _strict() else []
    if unexpected:
        terminalreporter.section("skips CI does not allow (see ALLOWED_SKIPS in tests/conftest.py)")
        for nodeid, reason in unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _strict() and exitstatus == pytest.ExitCode.OK and _unexpected_skips(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

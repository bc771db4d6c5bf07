"""A list's last 30 days, as the web page charts them: syncs per day and lag per hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
from fastapi.testclient import TestClient

from tests.harness import Site, add_dossiers, assert_converged, attach, make_api_token, make_list


@pytest.fixture
def auth(sites: dict[str, Site]) -> dict[str, str]:
    """A read-only API token on the Subscriber: the history only reads."""
    return {"Authorization": f"Token {make_api_token(sites['subscriber_a'], read_only=True)}"}


def _history(client: TestClient, auth: dict[str, str], local: int) -> dict[str, Any]:
    response = client.get(f"/sync/dossier-lists/{local}/history/", headers=auth)
    assert response.status_code == 200, response.text
    history: dict[str, Any] = response.json()
    return history


def _attached(sites: dict[str, Site]) -> tuple[Site, Site, int, int]:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted 'History'"), make_list(sub.node, 'Replica "History"')
    add_dossiers(leader.node, remote, 3)
    attach(sub, leader, remote, local)
    return leader, sub, remote, local


def test_history_shows_each_day_the_failures_and_the_lag(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str]
) -> None:
    leader, sub, remote, local = _attached(sites)
    sub.ok("sync", str(local))
    # The syncs the history counts as ok really delivered the list. verify=False: verify syncs,
    # and this test counts the syncs and the lag samples.
    assert_converged(leader, sub, [(remote, local)], verify=False)
    sub.ok("tick")  # probes the group: a lag sample

    history = _history(client, auth, local)
    today = datetime.now(UTC).date()
    assert history["local_list"] == local
    days = history["days"]
    assert [day["day"] for day in days] == [
        (today - timedelta(days=back)).isoformat() for back in range(29, -1, -1)
    ]
    assert days[-1]["ok"] >= 2 and days[-1]["failed"] == 0  # the attach's first sync, then ours
    assert all(day["ok"] == day["failed"] == 0 for day in days[:-1])
    samples = sub.node.execute("SELECT lag_bytes, lag_seconds FROM pgsync.lag_sample ORDER BY sampled_at")
    assert samples[0] == {"lag_bytes": None, "lag_seconds": 0.0}  # a sync reached its barrier
    assert samples[-1]["lag_bytes"] is not None and samples[-1]["lag_seconds"] is not None  # the probe
    assert history["lag"] and all(hour["lag_seconds"] is not None for hour in history["lag"])
    hours = [datetime.fromisoformat(hour["at"]) for hour in history["lag"]]
    assert hours == sorted(hours) and all(hour.minute == hour.second == 0 for hour in hours)

    leader.node.cluster.stop()
    try:
        assert sub.cli("sync", str(local)).exit_code != 0
        sub.ok("tick")  # the Leader does not answer: no sample, nothing to measure
    finally:
        leader.node.cluster.start()
    after = _history(client, auth, local)
    assert after["days"][-1]["failed"] == 1 and after["days"][-1]["ok"] == days[-1]["ok"]
    assert len(sub.node.execute("SELECT 1 FROM pgsync.lag_sample")) == len(samples)


def test_history_refuses_a_list_that_is_not_a_replica_and_a_missing_token(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str]
) -> None:
    plain = make_list(sites["subscriber_a"].node, "Plain")
    for list_id in (plain, 4242):
        refused = client.get(f"/sync/dossier-lists/{list_id}/history/", headers=auth)
        assert refused.status_code == 404 and refused.json()["code"] == "not_a_replica"
    missing = client.get(f"/sync/dossier-lists/{plain}/history/")
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"


def test_tick_prunes_lag_samples_older_than_30_days(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str]
) -> None:
    _, sub, _, local = _attached(sites)
    (group,) = sub.node.execute("SELECT group_id FROM pgsync.link WHERE local_list_id = %s", [local])
    for age, lag in (("31 days", 111.0), ("29 days", 29.0)):
        sub.node.execute(
            "INSERT INTO pgsync.lag_sample (group_id, sampled_at, lag_seconds) "
            "VALUES (%s, now() - %s::interval, %s)",
            [group["group_id"], age, lag],
        )
    sub.ok("tick")
    kept = sub.node.execute("SELECT lag_seconds FROM pgsync.lag_sample")
    assert 111.0 not in [row["lag_seconds"] for row in kept] and 29.0 in [row["lag_seconds"] for row in kept]
    lag = _history(client, auth, local)["lag"]
    assert lag[0]["lag_seconds"] == 29.0 and max(hour["lag_seconds"] for hour in lag) == 29.0

"""The HTTP API against real clusters: the seed request, every error, auth, metrics."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
from fastapi.testclient import TestClient

from pgsync_dossier import config as config_module
from pgsync_dossier.api import create_app
from tests.harness import (
    TOKEN,
    Site,
    add_dossiers,
    assert_converged,
    first_sync_over,
    make_api_token,
    make_list,
    wait_until,
    write_config,
)


@pytest.fixture
def auth(sites: dict[str, Site]) -> dict[str, str]:
    """The header of an API token on the Subscriber."""
    return {"Authorization": f"Token {make_api_token(sites['subscriber_a'])}"}


def seed_body(leader: Site, remote: int, local: int) -> dict[str, Any]:
    return {"remote_dossier_list": remote, "remote_url": leader.leader_url, "slave_dossier_list": local}


def test_the_seed_request_attaches_and_copies_in_the_background(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str]
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 30)
    created = client.post("/sync/dossier-lists/", json=seed_body(leader, remote, local), headers=auth)
    assert created.status_code == 201, created.text
    link = created.json()
    assert link["local_list"] == local and link["remote_list"] == remote
    assert link["state"] in ("attaching", "copying", "ready") and "copy" in link and "group" in link
    ready = wait_until(
        lambda: (
            (r := client.get(f"/sync/dossier-lists/{local}/", headers=auth).json())["state"] == "ready" and r
        ),
        "the background copy",
    )
    assert ready["dossiers"] == 30 and ready["leader_dossiers"] == 30
    first_sync_over(sub)
    assert_converged(leader, sub, [(remote, local)], outside={"dossier": 0, "dossier_face": 0})  # as it says
    again = client.post("/sync/dossier-lists/", json=seed_body(leader, remote, local), headers=auth)
    assert again.status_code == 200 and again.json()["local_list"] == local
    listed = client.get("/sync/dossier-lists/", headers=auth).json()
    assert [item["local_list"] for item in listed] == [local]

    synced = client.post(f"/sync/dossier-lists/{local}/sync/", headers=auth)
    assert synced.status_code == 200 and synced.json()["status"] == "synced"

    metrics = client.get("/metrics", headers=auth)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    labels = f'local_list="{local}",remote_list="{remote}",leader="leader site"'
    assert f'pgsync_dossier_link_state{{{labels},state="ready"}} 1' in metrics.text
    assert f"pgsync_dossier_link_lag_bytes{{{labels}}}" in metrics.text
    assert f"pgsync_dossier_link_last_sync_success_timestamp_seconds{{{labels}}}" in metrics.text
    assert "# TYPE pgsync_dossier_link_retained_wal_bytes gauge" in metrics.text

    deleted = client.delete(f"/sync/dossier-lists/{local}/", headers=auth)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(f"/sync/dossier-lists/{local}/", headers=auth).status_code == 404
    gone = client.delete(f"/sync/dossier-lists/{local}/", headers=auth)
    assert gone.status_code == 404 and gone.json()["code"] == "not_a_replica"
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")


def _error(response: Any) -> tuple[int, str]:
    body = response.json()
    keys = {"code", "message", "fields"} if body.get("code") == "invalid_request" else {"code", "message"}
    assert set(body) == keys and TOKEN not in response.text
    return response.status_code, body["code"]


def test_errors_have_codes_and_change_nothing(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    busy = make_list(sub.node, "Busy")
    add_dossiers(sub.node, busy, 2)

    def post(body: Any, app_client: TestClient = client) -> tuple[int, str]:
        return _error(app_client.post("/sync/dossier-lists/", json=body, headers=auth))

    assert post(seed_body(leader, remote, busy)) == (409, "list_not_empty")
    assert post(seed_body(leader, remote, 4242)) == (422, "local_list_not_found")
    assert post(seed_body(leader, 4242, local)) == (422, "leader_list_not_found")
    assert post({**seed_body(leader, remote, local), "remote_url": "postgresql://127.0.0.1:1/x"}) == (
        503,
        "unreachable",
    )
    assert post({**seed_body(leader, remote, local), "remote_url": "not a url"}) == (422, "invalid_url")
    assert post({"remote_dossier_list": remote, "slave_dossier_list": local}) == (422, "invalid_request")
    assert post({**seed_body(leader, remote, local), "extra": 1}) == (422, "invalid_request")
    assert post({**seed_body(leader, remote, local), "slave_dossier_list": "3"}) == (422, "invalid_request")
    assert post({**seed_body(leader, remote, local), "slave_dossier_list": 2**40}) == (422, "invalid_request")
    raw = client.post(
        "/sync/dossier-lists/", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert _error(raw) == (422, "invalid_request")

    for name, overrides, code in (
        ("token", {"sync_token": "W" * 40}, "token_mismatch"),
        ("model", {"face_model": "other-net"}, "face_model_mismatch"),
    ):
        cfg = write_config(tmp_path / f"{name}.yaml", sub.node, "subscriber", **overrides)
        with TestClient(create_app(config_module.load(cfg))) as other:
            response = other.post("/sync/dossier-lists/", json=seed_body(leader, remote, local), headers=auth)
            assert _error(response) == (409, code)
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    assert not sub.node.execute("SELECT * FROM pg_subscription")
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")
    assert not leader.node.execute("SELECT * FROM pg_publication")
    assert _error(client.get("/sync/dossier-lists/99/", headers=auth)) == (404, "not_a_replica")
    assert _error(client.post("/sync/dossier-lists/99/sync/", headers=auth)) == (404, "not_a_replica")


def test_auth(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/sync/dossier-lists/")
    assert _error(missing) == (401, "unauthorized") and missing.headers["WWW-Authenticate"] == "Token"
    assert _error(client.get("/sync/dossier-lists/", headers={"Authorization": "Token wrong"})) == (
        403,
        "forbidden",
    )
    assert _error(client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})) == (
        401,
        "unauthorized",
    )
    assert _error(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})) == (
        403,
        "sync_token_refused",
    )
    bearer = auth["Authorization"].replace("Token ", "Bearer ", 1)
    assert client.get("/metrics", headers={"Authorization": bearer}).status_code == 200
    assert _error(client.delete("/sync/dossier-lists/1/")) == (401, "unauthorized")
    assert client.get("/", headers=auth).status_code == 404  # web_ui is off by default


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/sync/dossier-lists/",
        "/sync/dossier-lists/{list_id}/",
        "/sync/dossier-lists/{list_id}/sync/",
        "/metrics",
        "/healthz",
    }
    body = spec["components"]["schemas"]["AttachBody"]
    original = {"remote_dossier_list", "remote_url", "slave_dossier_list"}
    # The original product's body, field for field, and one optional field of ours (relays).
    assert set(body["properties"]) == original | {"fallback_urls"}
    assert set(body["required"]) == original
    assert "201" in spec["paths"]["/sync/dossier-lists/"]["post"]["responses"]
    (scheme,) = spec["components"]["securitySchemes"].values()
    assert "API token (pgsync-dossier api-token create NAME)" in scheme["description"]


def test_concurrent_posts_make_one_link(
    sites: dict[str, Site], client: TestClient, auth: dict[str, str]
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 10)
    codes: list[int] = []

    def post() -> None:
        codes.append(
            client.post(
                "/sync/dossier-lists/", json=seed_body(leader, remote, local), headers=auth
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert 201 in codes and set(codes) <= {200, 201, 409}, codes
    assert len(sub.node.execute("SELECT * FROM pgsync.link")) == 1
    wait_until(
        lambda: client.get(f"/sync/dossier-lists/{local}/", headers=auth).json()["state"] == "ready",
        "the copy",
    )
    slots = leader.node.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgsync%'")
    assert len(slots) == 1
    first_sync_over(sub)
    assert_converged(leader, sub, [(remote, local)], outside={"dossier": 0, "dossier_face": 0})

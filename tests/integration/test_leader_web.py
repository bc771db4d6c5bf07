"""`remote_url` as the Leader's web address: the Leader's `serve`, the signed handshake, every
refusal with its code, and the Leader's own endpoints and metrics, against real clusters."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
from fastapi.testclient import TestClient

from pgsync_dossier import handshake, metrics
from pgsync_dossier.clusters import free_port
from pgsync_dossier.token import Secret, enrollment_password
from tests.harness import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    TOKEN,
    Site,
    add_dossiers,
    assert_converged,
    attach_args,
    first_sync_over,
    group_names,
    make_api_token,
    make_list,
    serving,
    wait_until,
    write_config,
)

OTHER_TOKEN = "Another-Token-Entirely-" + "fedcba9876543210" * 3


@pytest.fixture
def leader_web(sites: dict[str, Site]) -> Iterator[str]:
    """The Leader running `pgsync-dossier serve`: its web address."""
    with serving(sites["leader"].config_path) as url:
        yield url


@pytest.fixture
def client(client: TestClient, sites: dict[str, Site]) -> TestClient:
    """The Subscriber's API, every request carrying an API token of the Subscriber."""
    client.headers["Authorization"] = f"Token {make_api_token(sites['subscriber_a'])}"
    return client


def _signed_get(url: str, token: str, *, skew_s: float = 0) -> tuple[int, bytes, str | None, str]:
    nonce = handshake.new_nonce()
    header = handshake.request_header(Secret(token), nonce, time.time() + skew_s)
    request = urllib.request.Request(url + handshake.PATH, headers={"Authorization": header})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read(), response.headers.get(handshake.PROOF_HEADER), nonce
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), None, nonce


def _nothing_changed(sub: Site, local: int) -> None:
    assert group_names(sub) == []
    assert not sub.node.execute("SELECT 1 FROM pgsync.link WHERE local_list_id = %s", [local])


def test_the_seed_body_with_a_web_address_attaches_through_the_api(
    sites: dict[str, Site], leader_web: str, client: TestClient
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 20)
    body = {"remote_dossier_list": remote, "remote_url": leader_web, "slave_dossier_list": local}
    created = client.post("/sync/dossier-lists/", json=body)
    assert created.status_code == 201, created.text
    ready = wait_until(
        lambda: (r := client.get(f"/sync/dossier-lists/{local}/").json())["state"] == "ready" and r,
        "the background copy",
    )
    assert ready["dossiers"] == 20 and ready["leader"] == "leader site"
    assert ready["leader_url"].startswith("postgresql://127.0.0.1:")  # where it streams from
    # The same body again is the same link (the web address resolves to the same Leader).
    again = client.post("/sync/dossier-lists/", json=body)
    assert again.status_code == 200, again.text
    first_sync_over(sub)
    assert_converged(leader, sub, [(remote, local)])


def test_attach_from_the_cli_with_a_web_address(sites: dict[str, Site], leader_web: str) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 10)
    result = sub.run(
        *attach_args(leader_web + "/", remote, local),
    )
    assert result.exit_code == 0, result.stderr
    assert_converged(leader, sub, [(remote, local)])
    assert TOKEN not in result.stdout + result.stderr


def test_the_answer_names_where_to_stream_and_nothing_secret(sites: dict[str, Site], leader_web: str) -> None:
    status, body, proof, nonce = _signed_get(leader_web, TOKEN)
    assert status == 200
    assert handshake.response_is_genuine(Secret(TOKEN), nonce, body, proof)
    answer = json.loads(body)
    assert answer["role"] == "leader" and answer["face_model"] == "arcface-r100 v2"
    assert answer["replication_url"].startswith("postgresql://127.0.0.1:")
    text = body.decode()
    for secret in (TOKEN, ADMIN_PASSWORD, ADMIN_USER, enrollment_password(Secret(TOKEN)).reveal()):
        assert secret not in text


def test_the_leader_refuses_unsigned_stale_and_foreign_requests(
    sites: dict[str, Site], leader_web: str
) -> None:
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(leader_web + handshake.PATH, timeout=10)  # noqa: S310 - loopback
    assert unsigned.value.code == 401
    status, body, proof, _ = _signed_get(leader_web, OTHER_TOKEN)
    assert (status, json.loads(body)["code"], proof) == (403, "token_mismatch", None)
    status, body, _, _ = _signed_get(leader_web, TOKEN, skew_s=-3600)
    assert status == 403 and "clocks" in json.loads(body)["message"]


def test_a_leader_with_another_token_is_refused_and_nothing_changes(
    sites: dict[str, Site], client: TestClient, tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    foreign = write_config(tmp_path / "foreign-leader.yaml", leader.node, "leader", sync_token=OTHER_TOKEN)
    with serving(foreign) as url:
        body = {"remote_dossier_list": remote, "remote_url": url, "slave_dossier_list": local}
        refused = client.post("/sync/dossier-lists/", json=body)
        cli = sub.run(
            *attach_args(url, remote, local),
        )
    assert refused.status_code == 409 and refused.json()["code"] == "token_mismatch", refused.text
    assert cli.exit_code == 3 and "sync token" in cli.stderr
    _nothing_changed(sub, local)


def test_a_web_address_that_is_not_a_leader(sites: dict[str, Site], client: TestClient) -> None:
    leader, sub, other = sites["leader"], sites["subscriber_a"], sites["subscriber_b"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    with serving(other.config_path) as subscriber_web:  # a pgsync-dossier Subscriber
        body = {"remote_dossier_list": remote, "remote_url": subscriber_web, "slave_dossier_list": local}
        refused = client.post("/sync/dossier-lists/", json=body)
        cli = sub.run(
            *attach_args(subscriber_web, remote, local),
        )
    assert refused.status_code == 409 and refused.json()["code"] == "not_a_leader", refused.text
    assert cli.exit_code == 3 and "not a pgsync-dossier Leader" in cli.stderr
    with _fake_server(200, b'{"role": "leader", "replication_url": "postgresql://evil/x"}') as forged:
        body["remote_url"] = forged
        unsigned = client.post("/sync/dossier-lists/", json=body)
    assert unsigned.status_code == 409 and unsigned.json()["code"] == "token_mismatch", unsigned.text
    with _fake_server(200, b"<html>a router's login page</html>") as page:
        body["remote_url"] = page
        html = client.post("/sync/dossier-lists/", json=body)
    assert html.status_code == 409 and html.json()["code"] == "not_a_leader"
    _nothing_changed(sub, local)


def test_an_unreachable_web_address(sites: dict[str, Site], client: TestClient) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    nowhere = f"http://127.0.0.1:{free_port()}"
    body = {"remote_dossier_list": remote, "remote_url": nowhere, "slave_dossier_list": local}
    refused = client.post("/sync/dossier-lists/", json=body)
    assert refused.status_code == 503 and refused.json()["code"] == "unreachable", refused.text
    cli = sub.run(
        *attach_args(nowhere, remote, local),
    )
    assert cli.exit_code == 4 and "does not answer" in cli.stderr and "Traceback" not in cli.stderr
    _nothing_changed(sub, local)


@pytest.mark.parametrize(
    "smuggled",
    [
        "http://pgsync_replicator:secret-pw@{host}",
        "http://{host} host=evil.example.org",
        "http://{host}/?sslmode=disable",
        "http://{host}#options=-c%20x",
        "http://{host}\nHost: evil",
    ],
)
def test_a_web_address_with_something_smuggled_in_is_refused(
    sites: dict[str, Site], leader_web: str, client: TestClient, smuggled: str
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    url = smuggled.format(host=leader_web.removeprefix("http://"))
    body = {"remote_dossier_list": remote, "remote_url": url, "slave_dossier_list": local}
    refused = client.post("/sync/dossier-lists/", json=body)
    assert refused.status_code == 422 and refused.json()["code"] in ("invalid_url", "invalid_request"), (
        refused.text
    )
    assert "secret-pw" not in refused.text
    cli = sub.run(
        *attach_args(url, remote, local),
    )
    assert cli.exit_code == 2 and "secret-pw" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    _nothing_changed(sub, local)


def test_the_leader_lists_what_it_publishes_and_exports_its_streams(
    sites: dict[str, Site], leader_web: str
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 3)
    assert (
        sub.run(
            *attach_args(leader_web, remote, local),
        ).exit_code
        == 0
    )

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(leader_web + path, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    auth = {"Authorization": f"Token {make_api_token(leader, read_only=True)}"}
    assert get("/sync/dossier-lists/")[0] == 401
    assert get("/metrics", {"Authorization": f"Token {OTHER_TOKEN}"})[0] == 403
    status, body = get("/sync/dossier-lists/", auth)
    (published,) = json.loads(body)
    assert status == 200 and published["list"] == remote and published["dossiers"] == 3
    (stream,) = published["subscribers"]
    assert stream["subscriber"] == "subscriber_a site" and stream["slot_exists"]
    exposition = wait_until(
        lambda: (
            (text := get("/metrics", auth)[1].decode()) and "slot_active{" in text and " 1\n" in text and text
        ),
        "the stream to show as active",
    )
    series = _series(exposition)
    labels = f'{{subscriber="subscriber_a site",group="{stream["group"]}"}}'
    assert series[f"pgsync_dossier_leader_slot_active{labels}"] == 1
    assert series[f"pgsync_dossier_leader_group_lists{labels}"] == 1
    assert f"pgsync_dossier_leader_slot_last_confirmed_timestamp_seconds{labels}" in series
    assert {_family(line) for line in exposition.splitlines() if line.startswith("# TYPE")} == set(
        metrics.LEADER_METRICS
    )


def test_every_subscriber_metric_family_is_exported(sites: dict[str, Site], client: TestClient) -> None:
    """deploy/'s alerts and dashboard are checked against SUBSCRIBER_METRICS: the real
    /metrics must export exactly those families, a windowed link's interval included."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    sub.ok(
        *attach_args(leader.leader_url, remote, local),
        "--schedule",
        "FREQ=DAILY;BYHOUR=3",
    )
    sub.ok("sync", str(local))
    exposition = client.get("/metrics").text
    assert {_family(line) for line in exposition.splitlines() if line.startswith("# TYPE")} == set(
        metrics.SUBSCRIBER_METRICS
    )
    series = _series(exposition)
    labels = f'{{local_list="{local}",remote_list="{remote}",leader="leader site"}}'
    assert series[f"pgsync_dossier_link_sync_interval_seconds{labels}"] == 86400
    assert f"pgsync_dossier_link_last_sync_success_timestamp_seconds{labels}" in series


def _family(type_line: str) -> str:
    return type_line.split()[2]


def _series(exposition: str) -> dict[str, float]:
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


@contextmanager
def _fake_server(status: int, body: bytes) -> Iterator[str]:
    """A web server that is not a Leader: it answers every GET with one canned body."""

    class Canned(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

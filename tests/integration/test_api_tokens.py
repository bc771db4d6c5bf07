"""Named API tokens: the HTTP API takes them and refuses the sync token, on both roles; a
read-only token only reads; a revoked one is refused; the catalog holds only their hashes; the
CLI makes, lists and revokes them and refuses bad input without changing anything."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
from fastapi.testclient import TestClient

from pgsync_dossier import config as config_module
from pgsync_dossier.api import create_app
from tests.harness import TOKEN, Site, make_api_token, make_list


@pytest.fixture
def apps(sites: dict[str, Site]) -> Iterator[dict[str, TestClient]]:
    """The Subscriber's and the Leader's HTTP APIs."""
    with (
        TestClient(create_app(config_module.load(sites["subscriber_a"].config_path))) as subscriber,
        TestClient(create_app(config_module.load(sites["leader"].config_path))) as leader,
    ):
        yield {"subscriber_a": subscriber, "leader": leader}


def _auth(token: str, scheme: str = "Token") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


def _refusal(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"code", "message"} and TOKEN not in response.text
    return response.status_code, body["code"]


def _tokens(site: Site) -> list[dict[str, Any]]:
    return site.node.execute("SELECT * FROM pgsync.api_token ORDER BY name")


@pytest.mark.parametrize("role", ["subscriber_a", "leader"])
def test_the_sync_token_is_refused_and_a_named_token_works(
    sites: dict[str, Site], apps: dict[str, TestClient], role: str
) -> None:
    site, client = sites[role], apps[role]
    for path in ("/sync/dossier-lists/", "/metrics"):
        for scheme in ("Token", "Bearer"):
            refused = client.get(path, headers=_auth(TOKEN, scheme))
            assert _refusal(refused) == (403, "sync_token_refused")
            assert "pgsync-dossier api-token create NAME" in refused.json()["message"]
    assert _tokens(site) == []  # refused before any lookup, and nothing was written

    token = make_api_token(site, "Grafana.prod_1")
    for scheme in ("Token", "Bearer"):
        for path in ("/sync/dossier-lists/", "/metrics"):
            assert client.get(path, headers=_auth(token, scheme)).status_code == 200
    (row,) = _tokens(site)
    first_use = row["last_used_at"]
    assert isinstance(first_use, datetime)
    client.get("/metrics", headers=_auth(token))
    assert _tokens(site)[0]["last_used_at"] == first_use  # written at most once a minute

    assert _refusal(client.get("/metrics", headers=_auth(token[:-1]))) == (403, "forbidden")
    assert _refusal(client.get("/metrics", headers={"Authorization": token})) == (401, "unauthorized")


def test_a_read_only_token_reads_and_never_writes(
    sites: dict[str, Site], apps: dict[str, TestClient]
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    client = apps["subscriber_a"]
    reader = _auth(make_api_token(sub, "dashboard", read_only=True))
    for path in ("/sync/dossier-lists/", "/metrics"):
        assert client.get(path, headers=reader).status_code == 200
    assert _refusal(client.get(f"/sync/dossier-lists/{local}/", headers=reader)) == (404, "not_a_replica")
    body = {"remote_dossier_list": remote, "remote_url": leader.leader_url, "slave_dossier_list": local}
    for refused in (
        client.post("/sync/dossier-lists/", json=body, headers=reader),
        client.post(f"/sync/dossier-lists/{local}/sync/", headers=reader),
        client.delete(f"/sync/dossier-lists/{local}/", headers=reader),
        # It changes nothing, but it would make this node log in, with its token, where asked.
        client.get("/sync/leader-lists/", params={"remote_url": leader.leader_url}, headers=reader),
    ):
        assert _refusal(refused) == (403, "read_only_token")
        assert "dashboard" in refused.json()["message"]
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    assert not leader.node.execute("SELECT * FROM pg_replication_slots")

    # A token that may write does, with the same request.
    writer = _auth(make_api_token(sub, "operator"))
    assert client.post("/sync/dossier-lists/", json=body, headers=writer).status_code == 201
    # The Leader's endpoints only read: a read-only token of the Leader's reads them.
    leader_reader = _auth(make_api_token(leader, "dashboard", read_only=True))
    assert apps["leader"].get("/sync/dossier-lists/", headers=leader_reader).status_code == 200
    # A token is this node's: the Subscriber's does not open the Leader.
    assert _refusal(apps["leader"].get("/metrics", headers=reader)) == (403, "forbidden")


def test_a_revoked_token_is_refused(sites: dict[str, Site], apps: dict[str, TestClient]) -> None:
    sub, client = sites["subscriber_a"], apps["subscriber_a"]
    token, kept = make_api_token(sub, "old"), make_api_token(sub, "kept")
    assert client.get("/metrics", headers=_auth(token)).status_code == 200
    revoked = sub.ok("api-token", "revoke", "old")
    assert revoked.stdout == "" and "old" in revoked.stderr
    assert _refusal(client.get("/metrics", headers=_auth(token))) == (403, "forbidden")
    assert client.get("/metrics", headers=_auth(kept)).status_code == 200
    assert [row["name"] for row in sub.ok("api-token", "list", "--json").json()] == ["kept"]


def test_list_shows_neither_a_token_nor_its_hash(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    assert sub.ok("api-token", "list").stdout.strip() == "(none)"
    assert sub.ok("api-token", "list", "--json").json() == []
    tokens = [make_api_token(sub, "ops"), make_api_token(sub, "scraper", read_only=True)]
    hashes = [row["token_hash"] for row in _tokens(sub)]
    human, as_json = sub.ok("api-token", "list"), sub.ok("api-token", "list", "--json")
    for secret in (*tokens, *hashes):
        assert secret not in human.stdout + human.stderr + as_json.stdout + as_json.stderr
    rows = as_json.json()
    assert [(row["name"], row["read_only"]) for row in rows] == [("ops", False), ("scraper", True)]
    assert all(set(row) == {"name", "read_only", "created_at", "last_used_at"} for row in rows)
    assert all(row["last_used_at"] is None for row in rows)
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READ_ONLY", "CREATED_AT", "LAST_USED_AT"]
    assert [line.split()[:2] for line in lines[1:]] == [["ops", "no"], ["scraper", "yes"]]


def test_a_token_is_stored_only_as_its_hash(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    token = make_api_token(sub, "ops")
    (row,) = _tokens(sub)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    (whole,) = sub.node.execute("SELECT t::text AS text FROM pgsync.api_token AS t")
    assert token not in whole["text"] and token.removeprefix("pgsd_") not in whole["text"]


def test_create_prints_the_token_once_and_as_json(
    sites: dict[str, Site], apps: dict[str, TestClient]
) -> None:
    sub, client = sites["subscriber_a"], apps["subscriber_a"]
    made = sub.ok("api-token", "create", "reporting", "--read-only", "--json")
    data = made.json()
    assert set(data) == {"name", "token", "read_only"}
    assert data["name"] == "reporting" and data["read_only"] is True and data["token"].startswith("pgsd_")
    assert len(data["token"]) == len("pgsd_") + 43  # 32 random bytes, URL-safe base64
    assert client.get("/metrics", headers=_auth(data["token"])).status_code == 200

    human = sub.run("api-token", "create", "ops")  # the installed entry point, as an operator runs it
    assert human.exit_code == 0, human.stderr
    (token,) = human.stdout.splitlines()
    assert token.startswith("pgsd_") and token not in human.stderr
    assert "store it now: it cannot be shown again" in human.stderr
    # Not read-only: a sync request gets past the token, to the list (which is no replica).
    assert _refusal(client.post("/sync/dossier-lists/1/sync/", headers=_auth(token))) == (
        404,
        "not_a_replica",
    )
    listed = {row["name"]: row["read_only"] for row in sub.ok("api-token", "list", "--json").json()}
    assert listed == {"ops": False, "reporting": True}


ALLOWED = "letters, digits, '_', '.' or '-'"
REFUSALS = [
    (("create", "ops"), 3, "exists already"),
    (("create", "two words"), 2, ALLOWED),
    (("create", "x" * 65), 2, ALLOWED),
    (("create", "ops\nrm"), 2, ALLOWED),
    (("create", "Jürgen"), 2, ALLOWED),
    (("create", ""), 2, ALLOWED),
    (("revoke", "nobody"), 3, "no API token named 'nobody'"),
    (("revoke", "bad name"), 2, ALLOWED),
]


def test_cli_refusals_are_one_line_and_change_nothing(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    make_api_token(sub, "ops")
    before = _tokens(sub)
    for args, exit_code, says in REFUSALS:
        refused = sub.cli("api-token", *args)
        assert refused.exit_code == exit_code, (args, refused.stderr)
        assert refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1, args
        assert refused.stderr.startswith("error: ") and says in refused.stderr, (args, refused.stderr)
        assert _tokens(sub) == before
    # The installed entry point, as an operator runs it.
    for args, exit_code, _ in REFUSALS[:2]:
        entry_point = sub.run("api-token", *args)
        assert (entry_point.exit_code, entry_point.stdout) == (exit_code, ""), entry_point.stderr
        assert len(entry_point.stderr.strip().splitlines()) == 1 and "Traceback" not in entry_point.stderr
    assert _tokens(sub) == before


def test_one_read_only_token_installed_on_every_node_for_a_scraper(
    sites: dict[str, Site], apps: dict[str, TestClient], tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    token = make_api_token(leader, "prometheus", read_only=True)
    token_file = tmp_path / "prometheus.token"
    token_file.write_text(token + "\n")
    installed = sub.ok(
        "api-token", "create", "prometheus", "--read-only", "--from-file", str(token_file), "--json"
    )
    assert installed.json()["token"] is None and token not in installed.stdout + installed.stderr
    for client in apps.values():
        assert client.get("/metrics", headers=_auth(token)).status_code == 200
    assert _refusal(apps["subscriber_a"].delete("/sync/dossier-lists/1/", headers=_auth(token))) == (
        403,
        "read_only_token",
    )
    token_file.write_text(TOKEN)  # the sync token, copied by mistake
    refused = sub.cli("api-token", "create", "oops", "--from-file", str(token_file))
    assert (
        refused.exit_code == 2
        and "does not hold an API token" in refused.stderr
        and TOKEN not in refused.stderr
    )
    assert [row["name"] for row in _tokens(sub)] == ["prometheus"]

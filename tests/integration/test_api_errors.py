"""Every error of both HTTP APIs is `{"code", "message"}` (a 422 that does not validate adds
`fields`, every wrong field): unknown paths, methods a path does not take, the Leader asked
for a Subscriber's endpoint, bodies with several bad fields. FastAPI's `{"detail": ...}` is
answered nowhere and documented nowhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
from fastapi.testclient import TestClient

from pgsync_dossier import config as config_module
from pgsync_dossier.api import create_app
from tests.harness import TOKEN, Site, make_api_token, make_list

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def apps(sites: dict[str, Site]) -> Iterator[dict[str, TestClient]]:
    """The Subscriber's and the Leader's HTTP APIs."""
    with (
        TestClient(
            create_app(config_module.load(sites["subscriber_a"].config_path)), raise_server_exceptions=False
        ) as subscriber,
        TestClient(
            create_app(config_module.load(sites["leader"].config_path)), raise_server_exceptions=False
        ) as leader,
    ):
        yield {"subscriber": subscriber, "leader": leader}


def _error(response: Any, status: int, code: str, *, fields: bool = False) -> dict[str, Any]:
    """The body of an error, checked for what every error body is: a code, one line, no detail."""
    body: dict[str, Any] = response.json()
    assert (response.status_code, body.get("code")) == (status, code), response.text
    assert set(body) == ({"code", "message", "fields"} if fields else {"code", "message"}), body
    assert body["message"] and "\n" not in body["message"] and TOKEN not in response.text
    return body


def test_an_unknown_path_is_not_found(apps: dict[str, TestClient]) -> None:
    for role, client in apps.items():
        for path in ("/nowhere", "/sync/dossier-lists/3/nowhere/", "/sync/dossier-lists/3/sync/x"):
            body = _error(client.get(path), 404, "not_found")
            assert path in body["message"] and "/openapi.json" in body["message"], (role, body)
    # The other role's endpoint says which node serves it.
    wrong_node = _error(apps["subscriber"].get("/sync/leader/"), 404, "not_found")
    assert "the Leader's web address" in wrong_node["message"]


def test_a_method_a_path_does_not_take_is_not_allowed(apps: dict[str, TestClient]) -> None:
    """Every path of each OpenAPI document, with every method it does not declare: 405, the
    methods it does take in Allow and in the message (all of them, not the first handler's)."""
    for role, client in apps.items():
        paths = client.get("/openapi.json").json()["paths"]
        assert paths
        for template, operations in paths.items():
            path = re.sub(r"\{[^}]+\}", "1", template)
            declared = sorted(method.upper() for method in operations)
            for method in sorted(set(METHODS) - set(declared)):
                response = client.request(method, path)
                body = _error(response, 405, "method_not_allowed")
                assert response.headers["Allow"] == ", ".join(declared), (role, method, path)
                assert (
                    f"{method} is not allowed on {path} (it takes {', '.join(declared)})" in body["message"]
                )
    link = _error(apps["subscriber"].put("/sync/dossier-lists/1/"), 405, "method_not_allowed")
    assert "(it takes DELETE, GET)" in link["message"]


def test_the_leader_answers_a_post_it_does_not_take_in_the_same_voice(
    sites: dict[str, Site], apps: dict[str, TestClient]
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    auth = {"Authorization": f"Token {make_api_token(leader)}"}
    attach = {"remote_dossier_list": remote, "remote_url": leader.leader_url, "slave_dossier_list": local}
    client = apps["leader"]
    posted = _error(client.post("/sync/dossier-lists/", json=attach, headers=auth), 405, "method_not_allowed")
    assert posted["message"] == (
        "POST is not allowed on /sync/dossier-lists/ (it takes GET); lists are attached, synced and "
        "detached through a Subscriber's API, not the Leader's"
    )
    synced = _error(client.post(f"/sync/dossier-lists/{remote}/sync/", headers=auth), 404, "not_found")
    assert "through a Subscriber's API" in synced["message"]
    _error(client.delete(f"/sync/dossier-lists/{remote}/", headers=auth), 404, "not_found")
    _error(client.post("/sync/leader/", headers=auth), 405, "method_not_allowed")
    assert not leader.node.execute("SELECT * FROM pg_publication")


def test_a_request_with_several_bad_fields_lists_every_one(
    sites: dict[str, Site], apps: dict[str, TestClient]
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    local = make_list(sub.node, "Replica")
    auth = {"Authorization": f"Token {make_api_token(sub)}"}
    client = apps["subscriber"]

    def refused(body: Any) -> dict[str, Any]:
        return _error(
            client.post("/sync/dossier-lists/", json=body, headers=auth), 422, "invalid_request", fields=True
        )

    two = refused({"remote_dossier_list": "one", "remote_url": leader.leader_url, "slave_dossier_list": 0})
    assert [field["field"] for field in two["fields"]] == [
        "body.remote_dossier_list",
        "body.slave_dossier_list",
    ]
    assert two["fields"][0]["message"] == "Input should be a valid integer"
    assert two["fields"][1]["message"] == "Input should be greater than or equal to 1"
    assert two["message"] == (
        "body.remote_dossier_list: Input should be a valid integer; "
        "body.slave_dossier_list: Input should be greater than or equal to 1"
    )

    # A missing field and one too many, and a value that must not be echoed back.
    smuggled = refused({"remote_dossier_list": 1, "slave_dossier_list": local, "password": "secret-pw"})
    assert [field["field"] for field in smuggled["fields"]] == ["body.remote_url", "body.password"]
    bad_url = refused(
        {"remote_dossier_list": 0, "remote_url": "http://x\nsecret-pw", "slave_dossier_list": 1}
    )
    assert [field["field"] for field in bad_url["fields"]] == ["body.remote_dossier_list", "body.remote_url"]
    assert "secret-pw" not in str(bad_url)

    not_json = client.post(
        "/sync/dossier-lists/", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    body = _error(not_json, 422, "invalid_request", fields=True)
    assert [field["field"] for field in body["fields"]] == ["body"]
    assert body["message"].startswith("body: not valid JSON")

    path = _error(client.get("/sync/dossier-lists/0/", headers=auth), 422, "invalid_request", fields=True)
    assert [field["field"] for field in path["fields"]] == ["path.list_id"]
    # A product refusal with status 422 keeps its two keys.
    _error(
        client.post(
            "/sync/dossier-lists/",
            json={"remote_dossier_list": 1, "remote_url": leader.leader_url, "slave_dossier_list": 4242},
            headers=auth,
        ),
        422,
        "local_list_not_found",
    )
    assert not sub.node.execute("SELECT * FROM pgsync.link")


def test_no_error_is_documented_with_detail(apps: dict[str, TestClient]) -> None:
    """The OpenAPI documents declare the bodies the APIs answer: every error response is JSON
    with a code and a message, a 422 may add its fields, and FastAPI's HTTPValidationError
    (`{"detail": [...]}`) is in neither document."""
    for role, client in apps.items():
        spec = client.get("/openapi.json").json()
        schemas = spec["components"]["schemas"]
        assert not {"HTTPValidationError", "ValidationError"} & set(schemas), role
        assert not any("detail" in schema.get("properties", {}) for schema in schemas.values()), role
        assert set(schemas["FieldError"]["required"]) == {"field", "message"}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for status, response in operation["responses"].items():
                    if int(status) < 400:
                        continue
                    where = (role, method, path, status)
                    assert set(response["content"]) == {"application/json"}, where
                    schema = response["content"]["application/json"]["schema"]
                    if "$ref" in schema:
                        schema = schemas[schema["$ref"].rpartition("/")[2]]
                    assert set(schema["required"]) == {"code", "message"}, where
                    keys = {"code", "message", "fields"} if status == "422" else {"code", "message"}
                    assert set(schema["properties"]) == keys, where

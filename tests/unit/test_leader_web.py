"""The pure parts of a web-address `remote_url`: the address check, the signed handshake, and
what the Leader passes on of its connection string."""

from __future__ import annotations

import pytest

from pgsync_dossier import handshake
from pgsync_dossier.conninfo import has_password, web_address
from pgsync_dossier.leader_web import _reachable, public_endpoint
from pgsync_dossier.token import Secret

TOKEN = Secret("Sync-Token-For-Unit-Tests-" + "0123456789abcdef" * 2)
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("http://192.168.1.10", "http://192.168.1.10"),
        (" https://Leader.Example.org:8443/pgsync/ ", "https://leader.example.org:8443/pgsync"),
        ("http://[::1]:8800", "http://[::1]:8800"),
    ],
)
def test_web_addresses_the_original_product_uses(given: str, normalised: str) -> None:
    assert web_address(given) == normalised


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("http://user:pw@leader", "user or a password"),
        ("http://leader host=evil", "white space"),
        ("http://leader?sslmode=disable", "query"),
        ("http://leader/#frag", "query or a fragment"),
        ("http://leader:99999", "port"),
        ("http://lead_er", "not a host name"),
        ("ftp://leader", "http:// or https://"),
        ("http://leader\r\nX: y", "control characters"),
    ],
)
def test_web_addresses_with_anything_riding_along_are_refused(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        web_address(given)
    assert "pw" not in str(refused.value)


def test_the_handshake_proves_the_token_both_ways() -> None:
    nonce = handshake.new_nonce()
    header = handshake.request_header(TOKEN, nonce, NOW)
    assert handshake.check_request(TOKEN, header, NOW + 10) == nonce
    body = b'{"role": "leader"}'
    proof = handshake.response_proof(TOKEN, nonce, body)
    assert handshake.response_is_genuine(TOKEN, nonce, body, proof)
    assert not handshake.response_is_genuine(TOKEN, nonce, body + b" ", proof)  # a tampered body
    assert not handshake.response_is_genuine(TOKEN, handshake.new_nonce(), body, proof)  # a replayed answer
    assert not handshake.response_is_genuine(Secret("x" * 40), nonce, body, proof)
    assert TOKEN.reveal() not in header + proof


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "send 'Authorization"),
        ("Token abc", "send 'Authorization"),
        (handshake.request_header(Secret("y" * 40), "0" * 32, NOW), "not signed"),
        (handshake.request_header(TOKEN, "0" * 32, NOW - 3600), "clocks"),
    ],
)
def test_requests_the_leader_refuses(header: str | None, reason: str) -> None:
    with pytest.raises(handshake.HandshakeRefused, match=reason):
        handshake.check_request(TOKEN, header, NOW)


@pytest.mark.parametrize(
    ("conninfo", "public"),
    [
        (
            "postgresql://admin:s3cret@db.example.org:5433/dossiers?options=-c%20x",
            "postgresql://db.example.org:5433/dossiers",
        ),
        (
            "host=10.0.0.5 port=5432 dbname='my db' user=admin password=s3cret sslmode=verify-full",
            "postgresql://10.0.0.5:5432/my%20db?sslmode=verify-full",
        ),
        (
            "postgresql://a:5432,b:5433/d?target_session_attrs=read-write",
            "postgresql://a:5432,b:5433/d?target_session_attrs=read-write",
        ),
        (
            "postgresql:///dossiers?host=/var/run/postgresql",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/dossiers",
        ),
    ],
)
def test_the_leader_passes_on_where_it_is_never_who_logs_in(conninfo: str, public: str) -> None:
    assert public_endpoint(conninfo) == public
    assert not has_password(public_endpoint(conninfo))


def test_a_leader_that_names_only_itself_is_reached_at_its_web_host() -> None:
    assert (
        _reachable("postgresql://localhost:5432/d", "leader.example.org")
        == "postgresql://leader.example.org:5432/d"
    )
    assert _reachable("postgresql://%2Ftmp:5432/d", "10.0.0.5") == "postgresql://10.0.0.5:5432/d"
    assert (
        _reachable("postgresql://db.example.org:5432/d", "10.0.0.5") == "postgresql://db.example.org:5432/d"
    )
    assert _reachable("postgresql://127.0.0.1:5432/d", "127.0.0.1") == "postgresql://127.0.0.1:5432/d"


@pytest.mark.parametrize(
    ("conninfo", "expected"),
    [
        ("postgresql://u:p@h/db", True),
        ("postgresql://u@h/db", False),
        ("postgresql://h/db?password=x", True),
        ("host=h password=x", True),
        ("host=h dbname=x", False),
    ],
)
def test_has_password(conninfo: str, expected: bool) -> None:
    assert has_password(conninfo) is expected

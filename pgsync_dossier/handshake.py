"""How a Subscriber asks a Leader's web address where to stream from. Pure: no I/O.

Both sides prove they hold the same sync token without sending it: the request carries an
HMAC of a fresh nonce and the time, the answer an HMAC of that nonce and the body. The web
address may be plain http: someone on the path sees the Leader's public facts (its node name,
face model and replication endpoint), never the token or anything derived from it that opens
a door, and cannot forge an answer the Subscriber would accept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from pgsync_dossier.token import Secret

PATH = "/sync/leader/"
SCHEME = "Pgsync-HMAC"
PROOF_HEADER = "X-Pgsync-Proof"
#: How far apart the two clocks may be, and so how long a captured request can be replayed.
MAX_SKEW_S = 300
_LABEL = b"pgsync-dossier/leader-endpoint/v1"
_HEADER = re.compile(rf"^{SCHEME} nonce=([0-9a-f]{{32}}), ts=(\d{{1,12}}), mac=([0-9a-f]{{64}})$")


class HandshakeRefused(ValueError):
    """The request is malformed, stale or signed with another token."""


def _key(token: Secret) -> bytes:
    return hmac.new(token.reveal().encode(), _LABEL, hashlib.sha256).digest()


def _mac(token: Secret, *parts: bytes) -> str:
    return hmac.new(_key(token), b"\0".join(parts), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def request_header(token: Secret, nonce: str, now: float) -> str:
    ts = str(int(now))
    return f"{SCHEME} nonce={nonce}, ts={ts}, mac={_mac(token, b'request', nonce.encode(), ts.encode())}"


def check_request(token: Secret, header: str | None, now: float) -> str:
    """The request's nonce, when the header is well formed, fresh and signed with this token."""
    match = _HEADER.match((header or "").strip())
    if match is None:
        raise HandshakeRefused(f"send 'Authorization: {SCHEME} nonce=..., ts=..., mac=...'")
    nonce, ts, mac = match.groups()
    if abs(now - int(ts)) > MAX_SKEW_S:
        raise HandshakeRefused(
            f"the request's time is more than {MAX_SKEW_S} s from the Leader's: synchronise the clocks"
        )
    if not hmac.compare_digest(mac, _mac(token, b"request", nonce.encode(), ts.encode())):
        raise HandshakeRefused("the request is not signed with this Leader's sync token")
    return nonce


def response_proof(token: Secret, nonce: str, body: bytes) -> str:
    return _mac(token, b"response", nonce.encode(), hashlib.sha256(body).digest())


def response_is_genuine(token: Secret, nonce: str, body: bytes, proof: str | None) -> bool:
    return proof is not None and hmac.compare_digest(proof.strip(), response_proof(token, nonce, body))

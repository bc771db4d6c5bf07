"""A Leader's web address as `remote_url`: the Leader answers where Subscribers stream from,
and a Subscriber turns the address into that PostgreSQL URL before it attaches.

Existing integrations, runbooks and operators know a Leader by its web address
(`http://192.168.1.10`), not by its database. The answer is signed both ways with the sync
token (see handshake.py); after it, an attach goes on exactly as with a PostgreSQL URL.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import quote, urlsplit

import psycopg

from pgsync_dossier import __version__, handshake
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import is_url, mask_conninfo, web_address
from pgsync_dossier.errors import PreconditionFailed, ServerUnreachable, UsageError

if TYPE_CHECKING:
    from pgsync_dossier.catalog import Node

#: What the Leader passes on of its connection string: where it is, never who logs in.
PUBLIC_KEYS = ("host", "hostaddr", "port", "dbname", "sslmode", "target_session_attrs")
MAX_ANSWER_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 10.0


# -- the Leader's side ---------------------------------------------------------------------
def public_endpoint(conninfo: str) -> str:
    """The connection string as a postgresql:// URL that holds only PUBLIC_KEYS."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    netloc = ",".join(_netloc(host, port) for host, port in zip(hosts, ports, strict=False))
    query = "&".join(
        f"{key}={quote(str(params[key]), safe=',')}"
        for key in ("hostaddr", "sslmode", "target_session_attrs")
        if params.get(key)
    )
    dbname = quote(str(params.get("dbname") or ""), safe="")
    return f"postgresql://{netloc}/{dbname}" + (f"?{query}" if query else "")


def _netloc(host: str, port: str) -> str:
    if host.startswith("/"):
        shown = quote(host, safe="")
    elif ":" in host:
        shown = f"[{host}]"
    else:
        shown = host
    return shown + (f":{port}" if port else "")


class Answer(TypedDict):
    """The Leader's answer, as JSON (its field names are the protocol's)."""

    role: str
    node_name: str
    face_model: str
    sync_schedule: str | None
    replication_url: str
    version: str


def answer(config: Config, node: Node) -> Answer:
    """The public facts a Subscriber needs: the replication endpoint and what attach checks."""
    return {
        "role": node.role,
        "node_name": node.node_name,
        "face_model": node.face_model,
        "sync_schedule": node.sync_schedule,
        "replication_url": public_endpoint(config.replication_url or config.database_url),
        "version": __version__,
    }


# -- the Subscriber's side -----------------------------------------------------------------
def resolve(config: Config, address: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The Leader's PostgreSQL URL, asked of its web address (as `pgsync-dossier serve` on the
    Leader answers). Every failure is one PgsyncError: a bad address (UsageError), nothing
    answering (ServerUnreachable), an answer from something else or signed with another token
    (PreconditionFailed)."""
    try:
        base = web_address(address)
    except ValueError as exc:
        raise UsageError(f"invalid Leader web address: {exc}", code="invalid_url") from None
    nonce = handshake.new_nonce()
    request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), checked above
        base + handshake.PATH,
        headers={
            "Authorization": handshake.request_header(config.sync_token, nonce, time.time()),
            "Accept": "application/json",
            "User-Agent": f"pgsync-dossier/{__version__}",
        },
    )
    status, body, proof = _fetch(request, base, timeout_s)
    facts = _json(body)
    if status in (401, 403) and facts.get("code") == "token_mismatch":
        raise PreconditionFailed(
            f"the Leader at {base} refused this node's sync token: use the Leader's sync_token here",
            code="token_mismatch",
        )
    if status != 200 or facts.get("role") is None:
        raise PreconditionFailed(
            f"{base} answered (HTTP {status}) but is not a pgsync-dossier Leader: give the web "
            "address where the Leader runs pgsync-dossier serve, or its PostgreSQL URL",
            code="not_a_leader",
        )
    if not handshake.response_is_genuine(config.sync_token, nonce, body, proof):
        raise PreconditionFailed(
            f"the answer of {base} is not signed with this node's sync token: use the Leader's "
            "sync_token here",
            code="token_mismatch",
        )
    if facts["role"] not in ("leader", "relay"):  # a relay serves the lists it replicates
        raise PreconditionFailed(
            f"{base} is a {facts['role']}, not a Leader: attach to the Leader", code="not_a_leader"
        )
    endpoint = str(facts.get("replication_url") or "")
    if not is_url(endpoint):
        raise PreconditionFailed(
            f"the Leader at {base} advertises no usable replication URL ({mask_conninfo(endpoint)!r}): "
            "set replication_url in the Leader's config",
            code="not_a_leader",
        )
    return _reachable(public_endpoint(endpoint), urlsplit(base).hostname or "")


def _fetch(request: urllib.request.Request, base: str, timeout_s: float) -> tuple[int, bytes, str | None]:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return (
                response.status,
                response.read(MAX_ANSWER_BYTES + 1),
                response.headers.get(handshake.PROOF_HEADER),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(MAX_ANSWER_BYTES + 1), None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ServerUnreachable(
            f"the Leader's web address {base} does not answer ({reason}): check the address and "
            "that pgsync-dossier serve runs on the Leader"
        ) from None


def _json(body: bytes) -> dict[str, object]:
    """A JSON object from an answer not yet trusted (it is checked after): any values."""
    if len(body) > MAX_ANSWER_BYTES:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reachable(endpoint: str, web_host: str) -> str:
    """A Leader whose database URL names only itself (localhost, a socket) is reached at the
    host its web address has: that is the host the Subscriber just talked to."""
    params = psycopg.conninfo.conninfo_to_dict(endpoint)
    hosts = str(params.get("host") or "").split(",")
    if not all(_is_local(host) for host in hosts) or _is_local(web_host):
        return endpoint
    params.pop("hostaddr", None)
    port = str(params.get("port") or "").split(",")[0]
    params["host"], params["port"] = web_host, port
    return public_endpoint(psycopg.conninfo.make_conninfo("", **{k: v for k, v in params.items() if v}))


def _is_local(host: str) -> bool:
    if not host or host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

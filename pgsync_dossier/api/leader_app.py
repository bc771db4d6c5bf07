"""The Leader's HTTP API: where Subscribers stream from (for a `remote_url` that is the
Leader's web address), what it publishes to whom, and its side of every stream as metrics."""

from __future__ import annotations

import builtins
import json
import time
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from pgsync_dossier import __version__, handshake, leader_web, pg, status
from pgsync_dossier.api.common import ERRORS, install_common, reader
from pgsync_dossier.catalog import require_role
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PreconditionFailed


class StreamView(BaseModel):
    """One Subscriber group that streams a list, as the Leader sees its slot."""

    subscriber: str = Field(description="the Subscriber's node name")
    group: str = Field(description="the stream: its publication's and its slot's name")
    slot_exists: bool
    active: bool
    wal_status: str | None
    lag_bytes: int | None
    retained_wal_bytes: int | None
    last_confirmed: datetime | None = Field(
        description="the Subscriber's last reply while it streams, else when its slot went idle (17+)"
    )


class PublishedList(BaseModel):
    list: int
    list_name: str | None
    dossiers: int | None
    faces: int | None
    subscribers: builtins.list[StreamView]


def create_leader_app(config: Config) -> FastAPI:
    app = FastAPI(
        title="pgsync-dossier (Leader)",
        version=__version__,
        description="The Leader's side: Subscribers given its web address ask /sync/leader/ "
        "where to stream from (signed with the sync token). /sync/dossier-lists/ and /metrics need "
        "`Authorization: Token <API token>` (pgsync-dossier api-token create NAME).",
    )
    install_common(app, config)
    install_handshake(app, config)
    install_published(app, config, "/sync/dossier-lists/")
    return app


#: Where a relay shows what it publishes: its /sync/dossier-lists/ are its own replicas.
RELAY_PUBLISHED_PATH = "/sync/published-lists/"


def install_published(app: FastAPI, config: Config, path: str) -> None:
    """What `status --published` shows: a Leader's at /sync/dossier-lists/, a relay's at
    RELAY_PUBLISHED_PATH."""

    @app.get(path, dependencies=[reader(config)], responses=ERRORS, tags=["leader"])
    def published() -> list[PublishedList]:
        """Each list some Subscriber replicates from this node, with the streams that carry it."""
        return [PublishedList(**asdict(row)) for row in status.leader_status(config)]


def install_handshake(app: FastAPI, config: Config) -> None:
    """Where Subscribers given this node's web address stream from: a Leader's, or a relay's
    (whose own app is a Subscriber's)."""

    @app.get(handshake.PATH, tags=["leader"], responses=ERRORS)
    def endpoint(authorization: Annotated[str | None, Header()] = None) -> Response:
        """Where Subscribers stream from, signed with the sync token (see handshake.py): the
        request must be signed with it too, so only a holder of the token learns anything."""
        try:
            nonce = handshake.check_request(config.sync_token, authorization, time.time())
        except handshake.HandshakeRefused as exc:
            if not authorization:
                raise PreconditionFailed(str(exc), code="unauthorized") from None
            return JSONResponse({"code": "token_mismatch", "message": str(exc)}, 403)
        with pg.connect(config.database_url, what="this Leader's database") as conn:
            node = require_role(conn, "leader", "the Leader's endpoint")
        body = json.dumps(leader_web.answer(config, node)).encode()
        return Response(
            body,
            media_type="application/json",
            headers={handshake.PROOF_HEADER: handshake.response_proof(config.sync_token, nonce, body)},
        )

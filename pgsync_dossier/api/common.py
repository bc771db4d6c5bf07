"""What the Leader's and the Subscriber's HTTP APIs share: errors as JSON with a stable code,
the API token check, and /healthz."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from pgsync_dossier import api_tokens, metrics, pg
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable, UsageError, http_status

log = logging.getLogger(__name__)

MAX_INT4 = 2**31 - 1


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. list_not_empty, token_mismatch")
    message: str


token_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="API token (pgsync-dossier api-token create NAME), sent as `Token <token>` or "
    "`Bearer <token>`; never the sync token",
    scheme_name="Token",
)

#: FastAPI's `responses=`: a status code -> its OpenAPI response object (an open mapping there).
Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 502, 503, 504)}


def reader(config: Config) -> Any:
    """`Depends` for an endpoint that only reads: any valid API token."""
    return Depends(_token_check(config, writes=False))


def writer(config: Config) -> Any:
    """`Depends` for an endpoint that changes something: an API token that is not read-only."""
    return Depends(_token_check(config, writes=True))


def _token_check(config: Config, *, writes: bool) -> Callable[[str | None], None]:
    """The check behind `reader` and `writer`. The sync token is refused by name, before any
    SQL: it opens the Leader to Subscribers and must not spread to scripts and browsers."""

    def require_api_token(authorization: Annotated[str | None, Depends(token_header)]) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        presented = given.strip()
        if scheme.lower() not in ("token", "bearer") or not presented:
            raise PreconditionFailed(
                "send 'Authorization: Token <API token>' (pgsync-dossier api-token create NAME)",
                code="unauthorized",
            )
        if hmac.compare_digest(presented.encode(), config.sync_token.reveal().encode()):
            raise PreconditionFailed(
                "the sync token is not accepted here: create an API token with "
                "'pgsync-dossier api-token create NAME' and send that",
                code="sync_token_refused",
            )
        with pg.connect(config.database_url, what="this node's database") as conn:
            token = api_tokens.authenticate(conn, presented)
        if token is None:
            raise PreconditionFailed("unknown or revoked API token", code="forbidden")
        if writes and token.read_only:
            raise PreconditionFailed(
                f"API token {token.name} is read-only: it may only read", code="read_only_token"
            )

    return require_api_token


def install_common(app: FastAPI, config: Config) -> None:
    """Error handlers (no traceback ever reaches a client), the liveness probe and /metrics
    (a Subscriber's links, or a Leader's Subscriber streams)."""

    @app.exception_handler(PgsyncError)
    async def pgsync_error(_request: Request, exc: PgsyncError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error_response(UsageError(f"{where or 'request'}: {first.get('msg')}", code="invalid_request"))

    @app.exception_handler(psycopg.OperationalError)
    async def server_gone(_request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        reason = exc.diag.message_primary or "the connection was lost"
        return error_response(ServerUnreachable(f"a server stopped answering: {reason}"))

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(PgsyncError(f"internal error: {type(exc).__name__}", code="internal"))

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers. No token needed."""
        return {"status": "ok"}

    @app.get(
        "/metrics",
        dependencies=[reader(config)],
        response_class=PlainTextResponse,
        responses={**ERRORS, 200: {"content": {"text/plain": {}}}},
        tags=["service"],
    )
    def metrics_endpoint() -> PlainTextResponse:
        """Prometheus text format: one series per link on a Subscriber, per stream on a Leader."""
        return PlainTextResponse(metrics.render(config), media_type=metrics.CONTENT_TYPE)


def error_response(exc: PgsyncError) -> JSONResponse:
    """The error as the API answers it: its code and one line, with the status errors.py gives it."""
    status = http_status(exc)
    headers = {"WWW-Authenticate": "Token"} if status == 401 else None
    return JSONResponse({"code": exc.code, "message": _one_line(str(exc))}, status, headers=headers)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()

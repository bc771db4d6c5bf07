"""What the Leader's and the Subscriber's HTTP APIs share: errors as JSON with a stable code
(the product's own, a request that does not validate, and Starlette's 404 and 405 alike: no
client ever parses FastAPI's `{"detail": ...}`), the API token check, and /healthz."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from pgsync_dossier import api_tokens, handshake, metrics, pg
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, ServerUnreachable, UsageError, http_status

log = logging.getLogger(__name__)

MAX_INT4 = 2**31 - 1


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. list_not_empty, token_mismatch")
    message: str


class FieldError(BaseModel):
    field: str = Field(
        description="Where: `body.remote_url`, `path.list_id`, `query.<name>`; `body` for the body as a whole"
    )
    message: str = Field(description="What was expected there")


class InvalidRequestBody(ErrorBody):
    """A 422: the product's refusals (local_list_not_found, invalid_url...) have only a code and a
    message; `invalid_request` (the request does not validate) lists every field that is wrong."""

    fields: list[FieldError] = Field(
        default_factory=list, description="With code invalid_request: every field that is wrong"
    )


token_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="API token (pgsync-dossier api-token create NAME), sent as `Token <token>` or "
    "`Bearer <token>`; never the sync token",
    scheme_name="Token",
)

#: FastAPI's `responses=`: a status code -> its OpenAPI response object (an open mapping there).
Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {
    **{code: {"model": ErrorBody} for code in (401, 403, 404, 409, 502, 503, 504)},
    422: {"model": InvalidRequestBody},
}

#: The errors of an endpoint whose answer is not JSON (/metrics): FastAPI would declare a
#: `model` in the endpoint's own media type, but its errors are JSON like every other.
TEXT_ENDPOINT_ERRORS: Responses = {
    code: {"content": {"application/json": {"schema": ErrorBody.model_json_schema()}}}
    for code in (401, 403, 409, 502, 503, 504)
}

#: Starlette's own refusals (no such path, no such method on it) -> the code they are answered
#: with; any other status it raises is a request this API cannot take.
_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


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
        return invalid_request_response(exc.errors())

    @app.exception_handler(HTTPException)
    async def routing_error(request: Request, exc: HTTPException) -> JSONResponse:
        return routing_response(request, exc, config.role)

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
        responses={**TEXT_ENDPOINT_ERRORS, 200: {"content": {"text/plain": {}}}},
        tags=["service"],
    )
    def metrics_endpoint() -> PlainTextResponse:
        """Prometheus text format: one series per link on a Subscriber, per stream on a Leader."""
        return PlainTextResponse(metrics.render(config), media_type=metrics.CONTENT_TYPE)


def error_response(exc: PgsyncError, fields: Sequence[FieldError] = ()) -> JSONResponse:
    """The error as the API answers it: its code and one line, with the status errors.py gives it
    (and, for a request that does not validate, its wrong fields)."""
    status = http_status(exc)
    headers = {"WWW-Authenticate": "Token"} if status == 401 else None
    body: dict[str, object] = {"code": exc.code, "message": _one_line(str(exc))}
    if fields:
        body["fields"] = [{"field": _one_line(f.field), "message": _one_line(f.message)} for f in fields]
    return JSONResponse(body, status, headers=headers)


def invalid_request_response(errors: Sequence[ErrorDetails]) -> JSONResponse:
    """A request that does not validate: every wrong field at once (a 422 naming only the first
    made clients fix them one round trip at a time), located as FastAPI locates it, with what
    was expected there, never the value sent (it may hold a secret)."""
    fields = [_field_error(error) for error in errors] or [FieldError(field="request", message="invalid")]
    message = "; ".join(f"{field.field}: {field.message}" for field in fields)
    return error_response(UsageError(message, code="invalid_request"), fields)


def _field_error(error: ErrorDetails) -> FieldError:
    if error["type"] == "json_invalid":  # located at a character of the body, not at a field
        reason = (error.get("ctx") or {}).get("error", "")
        return FieldError(field="body", message=f"not valid JSON ({reason}, at character {error['loc'][-1]})")
    return FieldError(field=".".join(str(part) for part in error["loc"]) or "request", message=error["msg"])


def routing_response(request: Request, exc: HTTPException, role: str) -> JSONResponse:
    """Starlette's refusal of a path or a method, in the API's voice. A path of the other role's
    API says which node serves it: the commonest mistake is the Leader's address where the
    Subscriber's belongs, or the reverse."""
    status, method, path = exc.status_code, request.method, request.url.path
    code = _ROUTING_CODES.get(status, "invalid_request" if status < 500 else "internal")
    headers = exc.headers
    shown = path if len(path) <= 200 else path[:200] + "..."
    if exc.detail != HTTPStatus(status).phrase:  # a message of its own: it says more than ours
        message = str(exc.detail)
    elif status == 405:
        allowed = _allowed_methods(request)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        message = (
            f"{method} is not allowed on {shown} (it takes {', '.join(m for m in allowed if m != 'HEAD')})"
        )
    elif status == 404:
        message = f"nothing at {shown} on this {role.capitalize()}'s API: its endpoints are in /openapi.json"
    else:
        message = f"{method} {shown}: {exc.detail}"
    if status in (404, 405) and role == "leader" and path.startswith("/sync/dossier-lists/"):
        message += "; lists are attached, synced and detached through a Subscriber's API, not the Leader's"
    elif status in (404, 405) and role == "subscriber" and path.startswith(handshake.PATH):
        message += f"; {handshake.PATH} is the Leader's: give a Subscriber the Leader's web address"
    return JSONResponse({"code": code, "message": _one_line(message)}, status, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path takes. Starlette's 405 names only the first route that matched the
    path, so a path served by two handlers (GET and DELETE of a list) would say half of it."""
    return sorted(
        {
            method
            for route in request.app.router.routes
            if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
            for method in route.methods or ()
        }
    )


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()

"""The Subscriber's HTTP API: the original product's /sync/dossier-lists/ endpoints.

Handlers are plain `def` functions, so FastAPI runs them in its thread pool and the event loop
never waits on PostgreSQL. POST returns 201 as soon as the link exists; the initial copy runs
in a background thread and its progress shows in GET (`state` 'copying', then 'ready').
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import date, datetime
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pgsync_dossier import __version__, catalog, copier, links, pg, scheduler, status
from pgsync_dossier.api.common import ERRORS, MAX_INT4, error_response, install_common, reader, writer
from pgsync_dossier.api.status_models import Link
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PgsyncError, PreconditionFailed, error_for

log = logging.getLogger(__name__)

ListId = Annotated[int, PathParam(ge=1, le=MAX_INT4, description="The Subscriber's list id")]
SYNC_TIMEOUT_S = 300.0


#: `remote_url` as an attach's body and the list picker's query take it.
REMOTE_URL_MAX = 2048
REMOTE_URL_PATTERN = r"^[^\x00-\x1f\x7f]+$"
REMOTE_URL_HELP = (
    "The Leader's web address (http://leader, where it runs `serve`) or its "
    "PostgreSQL URL (without a password: this Subscriber's own login is used)"
)

RemoteUrlQuery = Annotated[
    str,
    Query(min_length=1, max_length=REMOTE_URL_MAX, pattern=REMOTE_URL_PATTERN, description=REMOTE_URL_HELP),
]


class AttachBody(BaseModel):
    """Exactly the original product's field names, and `fallback_urls`, optional."""

    model_config = ConfigDict(extra="forbid")
    remote_dossier_list: int = Field(ge=1, le=MAX_INT4, strict=True, description="The Leader's list id")
    remote_url: str = Field(
        min_length=1, max_length=REMOTE_URL_MAX, pattern=REMOTE_URL_PATTERN, description=REMOTE_URL_HELP
    )
    slave_dossier_list: int = Field(
        ge=1, le=MAX_INT4, strict=True, description="This Subscriber's empty list"
    )
    fallback_urls: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Other upstreams of the same list (a second relay, the Leader itself): PostgreSQL "
        "URLs without a password, tried in order when the upstream stays unreachable (docs/relays.md)",
    )


class LeaderListView(BaseModel):
    """A Leader list an attach may replicate (its `remote_dossier_list` is the id)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class LocalListView(BaseModel):
    """A list of this Subscriber (an attach's `slave_dossier_list` is the id)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    empty: bool = Field(description="no dossier and no face")
    replica_of: int | None = Field(description="the Leader list it replicates, if it is a replica")


class SyncResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    local_list: int
    group: str | None
    reason: str
    status: str
    copied: bool
    barrier_seq: int | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class SyncDay(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    day: date = Field(description="a UTC day")
    ok: int = Field(description="successful syncs of the list's group that day")
    failed: int


class LagHour(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime = Field(description="the start of a UTC hour")
    lag_seconds: float | None = Field(description="the greatest lag sampled in that hour")
    lag_bytes: int | None


class History(BaseModel):
    local_list: int
    days: list[SyncDay] = Field(description=f"exactly {catalog.HISTORY_DAYS} days, oldest first, today last")
    lag: list[LagHour] = Field(description="the hours that have lag samples, oldest first")


def create_subscriber_app(config: Config) -> FastAPI:
    background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pgsync-first-sync")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        background.shutdown(wait=True, cancel_futures=False)

    app = FastAPI(
        title="pgsync-dossier",
        version=__version__,
        description="Replicate Leader dossier lists into this Subscriber's lists. "
        "Every endpoint except /healthz needs `Authorization: Token <API token>` (pgsync-dossier "
        "api-token create NAME); a read-only token may only GET.",
        lifespan=lifespan,
    )
    reads, writes = [reader(config)], [writer(config)]

    install_common(app, config)

    @app.get("/sync/dossier-lists/", dependencies=reads, responses=ERRORS, tags=["links"])
    def list_links() -> list[Link]:
        return [Link.of(row) for row in status.links(config)]

    @app.post("/sync/dossier-lists/", status_code=201, dependencies=writes, responses=ERRORS, tags=["links"])
    def attach(body: AttachBody, response: Response) -> Link:
        """Attach: Leader list `remote_dossier_list` becomes replicated into `slave_dossier_list`.

        Returns 201 once the link exists (200 when it already existed); the initial copy goes
        on in the background: GET shows `state` 'copying' and `copy` progress, then 'ready'.
        """
        request = links.AttachRequest(
            body.remote_dossier_list,
            body.remote_url,
            body.slave_dossier_list,
            fallback_urls=tuple(body.fallback_urls),
        )
        result = links.attach(config, request, defer_first_sync=True)
        if result.first_sync_pending:
            background.submit(_first_sync, config, body.slave_dossier_list)
        if not result.created:
            response.status_code = 200
        return _one(body.slave_dossier_list)

    @app.get("/sync/leader-lists/", dependencies=writes, responses=ERRORS, tags=["picker"])
    def leader_lists(remote_url: RemoteUrlQuery) -> list[LeaderListView]:
        """The Leader's lists by name, asked of the address an attach would take (its web
        address or its PostgreSQL URL) with this Subscriber's sync token. Only reads, on
        both sides: it enrolls nothing. A writer's token all the same, as attach: it makes
        this node connect, with its token's login, to an address the caller chose."""
        return [LeaderListView.model_validate(one) for one in links.leader_lists(config, remote_url)]

    @app.get("/sync/local-lists/", dependencies=reads, responses=ERRORS, tags=["picker"])
    def local_lists(
        empty: Annotated[
            bool, Query(description="only the lists an attach takes: empty, and replicas of nothing")
        ] = False,
    ) -> list[LocalListView]:
        """This Subscriber's lists by name."""
        with pg.connect(config.database_url, what="this Subscriber's database") as conn:
            lists = catalog.local_lists(conn, attachable_only=empty)
        return [LocalListView.model_validate(one) for one in lists]

    @app.get("/sync/dossier-lists/{list_id}/", dependencies=reads, responses=ERRORS, tags=["links"])
    def get_link(list_id: ListId) -> Link:
        return _one(list_id)

    @app.get("/sync/dossier-lists/{list_id}/history/", dependencies=reads, responses=ERRORS, tags=["links"])
    def history(list_id: ListId) -> History:
        """The last 30 days of the list's syncs (per day) and lag (per hour): which site fell behind."""
        with pg.connect(config.database_url, what="this Subscriber's database") as conn:
            link = catalog.link_for_list(conn, list_id)
            if link is None:
                raise PreconditionFailed(
                    f"list {list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
            days = [SyncDay.model_validate(day) for day in catalog.sync_days(conn, link.group_id)]
            lag = [LagHour.model_validate(hour) for hour in catalog.lag_hours(conn, link.group_id)]
        return History(local_list=list_id, days=days, lag=lag)

    @app.delete(
        "/sync/dossier-lists/{list_id}/",
        status_code=204,
        dependencies=writes,
        responses=ERRORS,
        tags=["links"],
    )
    def detach(list_id: ListId) -> Response:
        """Detach: cancel replication and synchronization; the list becomes writable."""
        links.detach(config, list_id)
        return Response(status_code=204)

    @app.post("/sync/dossier-lists/{list_id}/sync/", dependencies=writes, responses=ERRORS, tags=["links"])
    def sync_now(list_id: ListId) -> SyncResult:
        """Sync now: 200 when the list reached its barrier; otherwise the status of the outcome's
        code (409 busy or paused, 503 unreachable, 504 timeout, 502 failed)."""
        (outcome,) = scheduler.sync_lists(config, [list_id], "manual", SYNC_TIMEOUT_S)
        if outcome.status == "synced":
            return SyncResult.model_validate(outcome)
        error = error_for(outcome.code)(outcome.error or outcome.status, code=outcome.code or outcome.status)
        return error_response(error)  # type: ignore[return-value]

    if config.web_ui:
        page = resources.files("pgsync_dossier").joinpath("web/index.html").read_text(encoding="utf-8")

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        def index() -> HTMLResponse:
            return HTMLResponse(
                page,
                headers={
                    "Content-Security-Policy": "default-src 'self'; "
                    "script-src 'unsafe-inline'; style-src 'unsafe-inline'"
                },
            )

    def _one(list_id: int) -> Link:
        """The list's link; status refuses a list that is not a replica (404 not_a_replica)."""
        return Link.of(status.links(config, list_id)[0])

    return app


def _first_sync(config: Config, list_id: int) -> None:
    try:
        (outcome,) = scheduler.sync_lists(config, [list_id], "creation", copier.COPY_TIMEOUT_S)
        if outcome.status != "synced":
            log.warning("list %s: first sync %s: %s", list_id, outcome.status, outcome.error)
    except Exception as exc:  # a background thread: nobody else would ever see this failure
        log.exception("list %s: first sync failed", list_id)
        _record_error(config, list_id, f"first sync failed: {exc}".splitlines()[0])


def _record_error(config: Config, list_id: int, message: str) -> None:
    try:
        with pg.connect(config.database_url, what="this Subscriber's database") as conn:
            catalog.set_link_error(conn, list_id, message)
    except PgsyncError:
        log.warning("list %s: could not record the error either", list_id)

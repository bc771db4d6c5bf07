"""The Subscriber's client of the Leader: its SQL API as seen from a Subscriber.

A Subscriber never owns the Leader's tables; it calls the SECURITY DEFINER functions that
the Leader's `setup` installed (leader_install.py, sql/leader_api.sql), as the named queries
of sql/leader_client.sql. It logs in with a login of its own, which it got by enrolling
(enrollment.py) through a login whose password is derived from the sync token: a Subscriber
with another token cannot even enroll, and the token alone opens no stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypedDict, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, class_row, kwargs_row

from pgsync_dossier import pg
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.deadline import Deadline, poll
from pgsync_dossier.errors import (
    DeadlineExceeded,
    OperationFailed,
    PgsyncError,
    PreconditionFailed,
    ServerUnreachable,
)
from pgsync_dossier.leader_install import ENROLL_ROLE, ListInfo
from pgsync_dossier.standby import StandbySlotRow
from pgsync_dossier.token import Secret, enrollment_password

#: libpq (16+) then refuses to hand a password to a server that asks for it in clear or as
#: MD5, or that skips authentication: a fake or downgraded server learns nothing.
REQUIRE_SCRAM = {"require_auth": "scram-sha-256"}
REQUIRE_AUTH_SINCE = 160000

R = TypeVar("R")


def scram_only(libpq_version: int) -> dict[str, str]:
    """REQUIRE_SCRAM for a libpq that knows the keyword (an older one refuses to connect)."""
    return REQUIRE_SCRAM if libpq_version >= REQUIRE_AUTH_SINCE else {}


def _query(name: str, **parts: sql.Composable) -> sql.Composed:
    return pg.query(name, "leader_client.sql", **parts)


# -- the Subscriber's view of the Leader ---------------------------------------------------
@dataclass(frozen=True)
class LeaderFacts:
    node_name: str
    role: str
    face_model: str
    token_verifier: str
    sync_schedule: str | None
    sync_at_startup: bool
    sync_at_creation: bool
    leader_id: str
    server_version: int


class StreamStall(TypedDict):
    """pgsync.api_stream_stall's row: the group's walsender's wait, and the slots that
    synchronized_standby_slots names (none before 17)."""

    wait_event_type: str | None
    wait_event: str | None
    standby_slots: list[StandbySlotRow] | None


@dataclass(frozen=True)
class GroupSlot:
    """pgsync.api_groups_status's row: a group's registration on the Leader, its slot and
    its heartbeat there (status, the probe's lag sample, the heal and stop decisions)."""

    name: str
    registered: bool
    lists: list[int] | None
    slot_exists: bool
    active: bool
    wal_status: str | None
    safe_wal_size: int | None
    retained_bytes: int | None
    lag_bytes: int | None
    confirmed_lsn: int | None
    max_slot_wal_keep_size: int
    seq: int | None
    beat_at: datetime | None
    leader_now: datetime


@dataclass(frozen=True)
class DossierColumn:
    """A column of the dossier tables, as the query dossier_columns reads it on either node."""

    table_name: str
    column_name: str
    type: str
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class LeaderList:
    """A list of the Leader, as a Subscriber's user picks it (pgsync.api_lists)."""

    id: int
    name: str


@dataclass(frozen=True)
class Login:
    """Who a Subscriber is on a Leader: the URL's own user and password ('url'), the
    token-derived enrollment login ('enrollment') or its own login ('own')."""

    kind: Literal["url", "enrollment", "own"]
    user: str | None = None
    password: Secret | None = None

    @classmethod
    def enrollment(cls, token: Secret) -> Login:
        return cls("enrollment", ENROLL_ROLE, enrollment_password(token))

    def keywords(self) -> dict[str, str]:
        """libpq keywords merged over the URL's."""
        if self.user is None or self.password is None:
            return {}
        return {"user": self.user, "password": self.password.reveal(), **scram_only(psycopg.pq.version())}


def with_tls(url: str, rootcert: str | None) -> str:
    """The URL to connect with: verify-full against the configured CA, unless the URL itself
    says which sslmode it wants."""
    if rootcert is None or "sslmode" in psycopg.conninfo.conninfo_to_dict(url):
        return url
    return psycopg.conninfo.make_conninfo(url, sslmode="verify-full", sslrootcert=rootcert)


def own_login_name(node_tag: str, leader_id: str) -> str:
    """A Subscriber's login on one Leader database. Roles belong to the cluster: a Subscriber of
    two Leader databases on one cluster has one login for each (pgsync.api_enroll agrees)."""
    return f"pgsync_s_{node_tag}_{hashlib.sha256(leader_id.encode()).hexdigest()[:8]}"


class LoginSource(Protocol):
    def client(self, url: str) -> LeaderClient: ...


class LoginRefused(PreconditionFailed):
    """The Leader refused this Subscriber's own login: revoked, pending, or a lost password."""

    default_code = "login_refused"


def stream_login(url: str, login: Login) -> tuple[str, Secret]:
    """What the Subscriber's server uses to stream from the Leader: the connection string
    without any password, and the password, which goes to a password file instead (no SQL
    text ever holds it: see subscriber.write_passfile)."""
    params = dict(psycopg.conninfo.conninfo_to_dict(url))
    password = params.pop("password", None)
    if login.user is not None and login.password is not None:
        params["user"] = login.user
        password = login.password.reveal()
    return psycopg.conninfo.make_conninfo("", **params), Secret(str(password or ""))


class LeaderClient:
    """One connection to the Leader's API."""

    def __init__(self, url: str, login: Login) -> None:
        self.url = url
        self.login = login
        self.shown_url = mask_conninfo(url)
        self.conn = self.connect()
        #: The Leader asked for the token-derived password and accepted it: the tokens are
        #: the same (its password was derived from its token at its setup). A Subscriber's own
        #: login proves nothing about today's tokens: attach checks the verifier then.
        self.token_proven = login.kind == "enrollment" and self.conn.pgconn.used_password
        self._versions: tuple[str | None, str | None] | None = None
        self._columns: list[DossierColumn] | None = None

    @property
    def version(self) -> int:
        """The server version of the Leader host this client reached (server_version_num)."""
        return self.conn.info.server_version

    @property
    def host(self) -> str:
        """The Leader host this client reached: one of a multi-host URL's, the primary."""
        return f"{self.conn.info.host}:{self.conn.info.port}"

    def connect(
        self, autocommit: bool = True, statement_timeout_ms: int = pg.DEFAULT_STATEMENT_TIMEOUT_MS
    ) -> pg.Connection:
        """A connection with this client's login: the API's own, or another for a copy."""
        try:
            return pg.connect(
                self.url,
                what="the Leader",
                autocommit=autocommit,
                statement_timeout_ms=statement_timeout_ms,
                login=self.login.keywords(),
            )
        except pg.AuthenticationFailed as exc:
            if self.login.kind == "enrollment":
                raise PreconditionFailed(
                    f"the Leader ({self.shown_url}) refused the enrollment login: the sync "
                    "tokens of this Subscriber and the Leader differ (or the Leader's setup has "
                    "not run); use the Leader's sync_token here",
                    code="token_mismatch",
                ) from None
            if self.login.kind == "own":
                raise LoginRefused(f"the Leader ({self.shown_url}) refused this Subscriber's login") from None
            raise PreconditionFailed(str(exc), code="leader_login_refused") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LeaderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, params: Mapping[str, object] | None = None) -> list[DictRow]:
        """Run the named query `name` of sql/leader_client.sql; its rows."""
        try:
            cur = self.conn.execute(_query(name), params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def _rows(self, row: Callable[..., R], name: str, params: Mapping[str, object] | None = None) -> list[R]:
        """The rows of the named query `name` of sql/leader_client.sql, each made by `row`."""
        try:
            with self.conn.cursor(row_factory=kwargs_row(row)) as cur:
                return cur.execute(_query(name), params).fetchall()
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def snapshot_reader(
        self, snapshot: str | None = None, durable_through: str | None = None
    ) -> pg.Connection:
        """A Leader connection in a repeatable-read, read-only transaction: one consistent view
        (the one exported as `snapshot`, when given), without a statement timeout (a copy or a
        comparison reads a whole list). The caller closes it.

        `durable_through` (a group's name): a reader whose rows will be written here (a copy, a
        repair) makes its new snapshot durable on the Leader before it reads. With
        synchronous_commit off there, a commit is visible before it is flushed, and a crash
        loses it on the Leader: a copy that had taken it would keep here a dossier the Leader
        never moved, in the wrong list. The stream never sends such a commit (a walsender sends
        flushed WAL only); this makes the orchestrator's own reads as safe. A read-only
        comparison need not: what it finds different is compared again after a barrier."""
        conn = self.connect(autocommit=False, statement_timeout_ms=0)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            if snapshot is not None:
                conn.execute(_query("set_transaction_snapshot", snapshot=sql.Literal(snapshot)))
            elif durable_through is not None:
                conn.execute(_query("take_snapshot"))
                # A commit of ours that wrote (every one is synchronous_commit = local, see
                # pg.connect) flushes the WAL up to its own record, past every commit the
                # snapshot sees; a transaction that only takes an id writes no WAL before its
                # commit and would be committed asynchronously. The bump is one more heartbeat
                # on the group's stream, which barriers take as any other.
                self.heartbeat(durable_through)
        except psycopg.Error as exc:
            conn.close()
            raise self.error(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def error(self, exc: psycopg.Error) -> PgsyncError:
        """What a failed call to the Leader means for the user."""
        if isinstance(exc, psycopg.errors.UndefinedFunction):
            return PreconditionFailed(
                f"the Leader ({self.shown_url}) has no pgsync API of this version: run "
                "pgsync-dossier migrate and setup there",
                code="leader_not_set_up",
            )
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            hint = (
                "omit the password from the URL, so that this Subscriber's own login is used"
                if self.login.kind == "url"
                else "a Subscriber acts on its own streams only"
            )
            return PreconditionFailed(
                f"the Leader ({self.shown_url}) refused the call: {exc.diag.message_primary}; {hint}",
                code="leader_login_refused",
            )
        reason = exc.diag.message_primary or pg.first_line(str(exc))
        lost = isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None
        if self.conn.broken or lost or (exc.sqlstate or "").startswith("08"):
            return ServerUnreachable(f"lost the Leader ({self.shown_url}): {reason}")
        # The Leader answered: a timeout, a lock, a limit. Not a reason to call it down.
        return OperationFailed(f"the Leader ({self.shown_url}) refused the request: {reason}")

    def alive(self) -> None:
        """Raise ServerUnreachable when the Leader connection is gone (a Leader that died)."""
        self._call("alive")

    def facts(self) -> LeaderFacts:
        rows = self._call("node_facts")
        if not rows:
            raise PreconditionFailed(
                f"the Leader ({self.shown_url}) is not set up: run pgsync-dossier setup there",
                code="leader_not_set_up",
            )
        return LeaderFacts(**rows[0])

    def versions(self) -> tuple[str | None, str | None]:
        """The Leader's schema revision and pgsync-dossier version (None, None: a Leader set up by a
        version that does not tell). Read once per command, as dossier_columns."""
        if self._versions is None:
            try:
                row = self.conn.execute(_query("node_versions")).fetchone()
            except psycopg.errors.UndefinedFunction:
                row = None
            except psycopg.Error as exc:
                raise self.error(exc) from None
            self._versions = (row["schema_revision"], row["software_version"]) if row else (None, None)
        return self._versions

    def list_origins(self, list_ids: list[int]) -> dict[int, str] | None:
        """The Leader each list comes from, through relays (None: a Leader of a version that
        does not tell; its lists are its own)."""
        try:
            rows = self.conn.execute(_query("list_origins"), {"lists": list_ids}).fetchall()
        except psycopg.errors.UndefinedFunction:
            return None
        except psycopg.Error as exc:
            raise self.error(exc) from None
        return {int(row["id"]): str(row["origin"]) for row in rows}

    def dossier_columns(self) -> list[DossierColumn]:
        """The Leader's dossier and face columns, as schema_skew compares them."""
        if self._columns is None:
            try:
                with self.conn.cursor(row_factory=class_row(DossierColumn)) as cur:
                    self._columns = cur.execute(pg.query("dossier_columns", "schema_skew.sql")).fetchall()
            except psycopg.Error as exc:
                raise self.error(exc) from None
        return self._columns

    def enrollment_state(self, node_tag: str) -> str | None:
        """pending, active, approved, revoked, or None when the Leader never saw this tag."""
        rows = self._call("enrollment_state", {"tag": node_tag})
        return rows[0]["state"] if rows else None

    def enroll(self, node_tag: str, node_name: str, password: Secret, login: str) -> str:
        """Ask for this Subscriber's own login with this password (sent as a SCRAM verifier,
        so the password never leaves this host); returns its state, active or pending."""
        verifier = self.conn.pgconn.encrypt_password(
            password.reveal().encode(), login.encode(), b"scram-sha-256"
        ).decode()
        try:
            cur = self.conn.execute(
                _query("enroll"), {"tag": node_tag, "node_name": node_name, "verifier": verifier}
            )
        except (
            psycopg.errors.UniqueViolation,
            psycopg.errors.DuplicateObject,
            psycopg.errors.InsufficientPrivilege,
        ) as exc:
            hint = f"; {exc.diag.message_hint}" if exc.diag.message_hint else ""
            raise PreconditionFailed(
                f"the Leader ({self.shown_url}) refused to enroll this Subscriber: "
                f"{exc.diag.message_primary}{hint}",
                code="enrollment_refused",
            ) from None
        except psycopg.Error as exc:
            raise self.error(exc) from None
        row = cur.fetchone()
        assert row is not None
        return str(row["state"])

    def lists_info(self, list_ids: list[int]) -> dict[int, ListInfo]:
        """Name and rows of each Leader list named (missing lists are absent)."""
        return {row["id"]: row for row in self._rows(ListInfo, "lists_info", {"lists": list_ids})}

    def lists(self) -> list[LeaderList]:
        """Every list of the Leader, by name: what an attach may replicate."""
        try:
            with self.conn.cursor(row_factory=class_row(LeaderList)) as cur:
                return cur.execute(_query("lists")).fetchall()
        except psycopg.errors.UndefinedFunction:
            raise PreconditionFailed(
                f"the Leader ({self.shown_url}) was set up by a version that does not list its lists: "
                "run pgsync-dossier setup there again (or give the list's id)",
                code="leader_not_set_up",
            ) from None
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def wal_position(self) -> int:
        """The Leader's WAL insert position, as row_version counts it."""
        rows = self._call("wal_position")
        return int(rows[0]["lsn"])

    def version_floor(self) -> int:
        """Below every row_version written from now on: the Leader's WAL insert position. A
        relay's rows carry its Leader's versions, not positions in the relay's own WAL, so
        through a relay every row counts as recent (-1): as correct, and slower to settle."""
        if self.facts().role == "relay":
            return -1
        return self.wal_position()

    def dossiers_in_lists(self, ids: list[str], list_ids: list[int]) -> list[str]:
        """Which of these dossiers are in one of these Leader lists now."""
        rows = self._call("dossiers_in_lists", {"ids": ids, "lists": list_ids})
        return [row["id"] for row in rows]

    def set_group_lists(
        self, name: str, node_name: str, list_ids: list[int], columns: dict[str, list[str]] | None
    ) -> None:
        """Make the group's publication filter on exactly these lists and publish these columns
        per table (None: every column, on a Leader without column lists); committed on return."""
        if columns is None:
            self._call("set_group_lists", {"name": name, "node_name": node_name, "lists": list_ids})
            return
        self._call(
            "set_group_lists_columns",
            {
                "name": name,
                "node_name": node_name,
                "lists": list_ids,
                "dossier": columns["dossier"],
                "dossier_face": columns["dossier_face"],
            },
        )

    def group_columns(self, name: str) -> dict[str, list[str] | None]:
        """The columns the group's publication names per table (None: all of them)."""
        rows = self._call("group_columns", {"name": name})
        return {row["table_name"]: row["columns"] for row in rows}

    def wait_xacts_ended(self, deadline: Deadline) -> None:
        """Until every Leader transaction that may have written before the last (committed)
        filter change has ended: what they wrote then is published with the filter as it was
        before, so a copy that widened the filter must see it instead, and a detach that
        narrowed it must let it arrive before its barrier."""
        horizon = self._call("xid_horizon")[0]["xid"]

        def ended() -> bool | None:
            rows = self._call("xacts_ended_before", {"horizon": horizon})
            return True if rows[0]["ended"] else None

        if poll(ended, deadline) is None:
            raise DeadlineExceeded(
                f"a transaction on the Leader ({self.shown_url}) that was running when the copy, "
                f"repair or detach began has not ended within {deadline.seconds:g}s; it waits for it to end "
                "(look for long or idle transactions in pg_stat_activity there)"
            )

    def drop_group(self, name: str) -> None:
        self._call("drop_group", {"name": name})

    def drop_stale_slot(self, name: str) -> bool:
        return bool(self._call("drop_stale_slot", {"name": name})[0]["r"])

    def recreate_slot(self, name: str) -> None:
        """The group's slot anew (a lost one is dropped first)."""
        self._call("recreate_slot", {"name": name})

    def heartbeat(self, name: str) -> int:
        seq = self._call("heartbeat", {"name": name})[0]["seq"]
        if seq is None:
            raise OperationFailed(
                f"the Leader ({self.shown_url}) does not know the group {name}: run "
                "pgsync-dossier sync again to register it",
                code="not_published",
            )
        return int(seq)

    def groups_status(self, names: list[str]) -> dict[str, GroupSlot]:
        return {row.name: row for row in self._rows(GroupSlot, "groups_status", {"names": names})}

    def stream_stall(self, name: str) -> StreamStall:
        """What the Leader knows of why the group's stream may not advance: its walsender's
        wait event, and the slots synchronized_standby_slots names (see stall.py)."""
        return self._rows(StreamStall, "stream_stall", {"name": name})[0]


class LeaderPool:
    """One connection per Leader for a whole command, reused across its groups and lists,
    logged in as this Subscriber (see enrollment.Logins, which also enrolls it if need be).

    A Leader that could not be reached is not tried again within the same command: its
    groups fail at once with the same error instead of each waiting for a connect timeout.
    """

    def __init__(self, logins: LoginSource) -> None:
        self.logins = logins
        self._clients: dict[str, LeaderClient] = {}
        self._failures: dict[str, PgsyncError] = {}

    def get(self, url: str) -> LeaderClient:
        if url in self._failures:
            raise self._failures[url]
        client = self._clients.get(url)
        if client is not None and client.conn.broken:
            client.close()
            client = None
        if client is None:
            try:
                client = self.logins.client(url)
            except ServerUnreachable as exc:
                self._failures[url] = exc
                raise
            self._clients[url] = client
        return client

    def forget(self, url: str) -> None:
        """Drop a client whose connection went bad, so the next get() reconnects."""
        client = self._clients.pop(url, None)
        if client is not None:
            client.close()
        self._failures.pop(url, None)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> LeaderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What happens on the Leader: its setup, and its SQL API as seen from a Subscriber.

A Subscriber never owns the Leader's tables; it calls the SECURITY DEFINER functions that
`setup` installed (sql/leader_api.sql) over the replication login, whose password is derived
from the sync token, so a Subscriber with another token cannot even log in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgsync_dossier import pg
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import OperationFailed, PreconditionFailed, ServerUnreachable
from pgsync_dossier.token import Secret, replication_password

REPLICATION_ROLE = "pgsync_replicator"


def install(conn: pg.Connection, token: Secret) -> None:
    """Create or update the replication login and (re)install the API. Inside a transaction."""
    password = replication_password(token).reveal()
    # Send a SCRAM verifier, never the password itself: statement logs must not hold it.
    verifier = conn.pgconn.encrypt_password(
        password.encode(), REPLICATION_ROLE.encode(), b"scram-sha-256"
    ).decode()
    role = sql.Identifier(REPLICATION_ROLE)
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [REPLICATION_ROLE]
    ).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(role))
    conn.execute(
        sql.SQL(
            "ALTER ROLE {} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}"
        ).format(role, sql.Literal(verifier))
    )
    conn.execute(
        "ALTER TABLE public.dossier REPLICA IDENTITY USING INDEX dossier_id_dossier_list_id_key;"
        "ALTER TABLE public.dossier_face REPLICA IDENTITY USING INDEX dossier_face_id_dossier_list_id_key;"
        "ALTER TABLE pgsync.heartbeat REPLICA IDENTITY USING INDEX heartbeat_id_list_id_key"
    )
    conn.execute(pg.sql_file("leader_api.sql").encode())


def published_lists(conn: pg.Connection) -> list[dict[str, Any]]:
    return conn.execute(pg.query("leader_published_lists")).fetchall()


def subscriber_links(conn: pg.Connection) -> list[dict[str, Any]]:
    return conn.execute(pg.query("leader_subscriber_links")).fetchall()


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


def login_params(url: str, token: Secret) -> dict[str, str]:
    """libpq keywords to log in to the Leader: the URL's own password, else the token login."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}
    if params.get("password"):
        return {}
    return {"user": REPLICATION_ROLE, "password": replication_password(token).reveal()}


def subscription_conninfo(url: str, token: Secret) -> str:
    """The connection string the Subscriber's server uses to stream from the Leader."""
    return psycopg.conninfo.make_conninfo(url, **login_params(url, token))


class LeaderClient:
    """One connection to the Leader's API, opened with the token-derived login."""

    def __init__(self, url: str, token: Secret) -> None:
        self.url = url
        self.shown_url = mask_conninfo(url)
        uses_token_login = bool(login_params(url, token))
        try:
            self.conn = pg.connect(url, what="the Leader", login=login_params(url, token))
        except pg.AuthenticationFailed as exc:
            if uses_token_login:
                raise PreconditionFailed(
                    f"the Leader ({self.shown_url}) refused the replication login: the sync "
                    "tokens of this Subscriber and the Leader differ (or the Leader's setup has "
                    "not run); use the Leader's sync_token here",
                    code="token_mismatch",
                ) from None
            raise PreconditionFailed(str(exc), code="leader_login_refused") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LeaderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        try:
            cur = self.conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.errors.UndefinedFunction:
            raise PreconditionFailed(
                f"the Leader ({self.shown_url}) has no pgsync API: run pgsync-dossier setup there",
                code="leader_not_set_up",
            ) from None
        except psycopg.errors.InsufficientPrivilege:
            raise PreconditionFailed(
                f"the login used for the Leader ({self.shown_url}) may not call its pgsync API: "
                "omit the password from the URL so the token-derived replication login is used",
                code="leader_login_refused",
            ) from None
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or pg.first_line(str(exc))
            if self.conn.broken or (exc.sqlstate or "").startswith("08"):
                raise ServerUnreachable(f"lost the Leader ({self.shown_url}): {reason}") from None
            # The Leader answered: a timeout, a lock, a limit. Not a reason to call it down.
            raise OperationFailed(f"the Leader ({self.shown_url}) refused the request: {reason}") from None

    def facts(self) -> LeaderFacts:
        rows = self._call("SELECT * FROM pgsync.api_node_facts()")
        if not rows:
            raise PreconditionFailed(
                f"the Leader ({self.shown_url}) is not set up: run pgsync-dossier setup there",
                code="leader_not_set_up",
            )
        return LeaderFacts(**rows[0])

    def list_info(self, list_id: int) -> dict[str, Any] | None:
        rows = self._call("SELECT * FROM pgsync.api_list_info(%s)", [list_id])
        return rows[0] if rows else None

    def publish(self, list_id: int) -> str:
        return str(self._call("SELECT pgsync.api_publish_list(%s) AS name", [list_id])[0]["name"])

    def register(self, list_id: int, node_name: str, local_list_id: int, slot_name: str) -> None:
        self._call(
            "SELECT pgsync.api_register_subscriber(%s, %s, %s, %s)",
            [list_id, node_name, local_list_id, slot_name],
        )

    def unregister(self, slot_name: str) -> str:
        return str(self._call("SELECT pgsync.api_unregister_subscriber(%s) AS r", [slot_name])[0]["r"])

    def drop_stale_slot(self, slot_name: str) -> bool:
        return bool(self._call("SELECT pgsync.api_drop_stale_slot(%s) AS r", [slot_name])[0]["r"])

    def unpublish_if_unused(self, list_id: int) -> bool:
        return bool(self._call("SELECT pgsync.api_unpublish_if_unused(%s) AS r", [list_id])[0]["r"])

    def heartbeat(self, list_id: int) -> int:
        seq = self._call("SELECT pgsync.api_heartbeat(%s) AS seq", [list_id])[0]["seq"]
        if seq is None:
            raise OperationFailed(
                f"the Leader ({self.shown_url}) no longer publishes list {list_id}: "
                "detach the list and attach it again",
                code="not_published",
            )
        return int(seq)

    def list_heartbeat(self, list_id: int) -> dict[str, Any] | None:
        rows = self._call("SELECT * FROM pgsync.api_list_heartbeat(%s)", [list_id])
        return rows[0] if rows else None

    def list_digest(self, list_id: int) -> dict[str, Any]:
        return self._call("SELECT * FROM pgsync.api_list_digest(%s)", [list_id])[0]

    def slot_status(self, slot_name: str) -> dict[str, Any]:
        return self._call("SELECT * FROM pgsync.api_slot_status(%s)", [slot_name])[0]

"""Named API tokens for the HTTP API and the web page: the only code that writes pgsync.api_token.

The sync token opens the Leader to Subscribers; handing it to every dashboard, script and
operator's browser would hand them that too. So the API takes tokens of its own instead: one per
use, named so it can be revoked alone, optionally read-only, on either role.

A token is shown once, when it is made; the catalog keeps only its SHA-256 hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pgsync_dossier import pg
from pgsync_dossier.config import Config, read_small_text
from pgsync_dossier.errors import PreconditionFailed, UsageError

PREFIX = "pgsd_"
#: Kept in step with the table's CHECK constraint (alembic/versions/0007_least_privilege.py).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WHAT = "this node's database"


@dataclass(frozen=True)
class ApiToken:
    """A token as the catalog describes it: never the token, never its hash."""

    name: str
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    name: str
    token: str
    read_only: bool


def generate() -> str:
    """256 random bits; the prefix tells a leaked string apart from the sync token in a scan."""
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256, hex. A slow, salted hash (as for passwords) guards guessable secrets against an
    offline search; these are 256-bit random strings, which no search finds, so it would only
    slow down every API request."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> None:
    """Refused before any SQL, so the message names the allowed characters, not a constraint."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid API token name {name!r}: use 1 to 64 ASCII letters, digits, '_', '.' or '-'"
        )


def read_token_file(path: Path) -> str:
    """A token made elsewhere, to install the same one on several nodes (a Prometheus that
    scrapes them all with one credentials file). Only this project's tokens are taken: a
    guessable string, or the sync token copied by mistake, is refused."""
    try:
        token = read_small_text(path).strip()
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"cannot read the token file {path}: check the path and its permissions") from None
    if not re.fullmatch(rf"{PREFIX}[A-Za-z0-9_-]{{43}}", token):
        raise UsageError(
            f"{path} does not hold an API token (pgsd_ and 43 more characters, as api-token create prints)"
        )
    return token


def create(config: Config, name: str, read_only: bool = False, token: str | None = None) -> NewToken:
    """A new token named `name` (drawn here, or given); an existing name is refused rather
    than replaced, so a typo cannot silently cut off whoever uses the old token."""
    check_name(name)
    token = token or generate()
    params = {"name": name, "token_hash": token_hash(token), "read_only": read_only}
    with _catalog(config) as conn:
        made = _rows(conn, "api_token_create", params)
    if not made:
        raise PreconditionFailed(
            f"an API token named {name!r} exists already: revoke it first, or choose another name",
            code="token_exists",
        )
    return NewToken(name, token, read_only)


def revoke(config: Config, name: str) -> None:
    check_name(name)
    with _catalog(config) as conn:
        gone = conn.execute(_query("api_token_revoke"), {"name": name}).rowcount
    if not gone:
        raise PreconditionFailed(f"there is no API token named {name!r}", code="not_found")


def list_tokens(config: Config) -> list[ApiToken]:
    with _catalog(config) as conn:
        return _rows(conn, "api_tokens")


def authenticate(conn: pg.Connection, presented: str) -> ApiToken | None:
    """The token whose hash matches, or None. The lookup by hash stands in for a constant-time
    comparison: what the index compares is a hash the caller cannot steer."""
    with _translated():
        found = _rows(conn, "api_token_use", {"token_hash": token_hash(presented)})
    return found[0] if found else None


def _query(name: str) -> sql.Composed:
    return pg.query(name, "api_tokens.sql")


def _rows(conn: pg.Connection, name: str, params: Mapping[str, object] | None = None) -> list[ApiToken]:
    with conn.cursor(row_factory=class_row(ApiToken)) as cur:
        return cur.execute(_query(name), params).fetchall()


@contextmanager
def _catalog(config: Config) -> Iterator[pg.Connection]:
    with pg.connect(config.database_url, what=_WHAT) as conn, _translated():
        yield conn


@contextmanager
def _translated() -> Iterator[None]:
    """A database not yet migrated to API tokens says so, rather than failing as a bug."""
    try:
        yield
    except psycopg.errors.UndefinedTable:
        raise PreconditionFailed(
            "this database has no API tokens yet: run pgsync-dossier migrate", code="not_migrated"
        ) from None

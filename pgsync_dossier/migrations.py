"""Schema migrations (Alembic), run on a connection we open ourselves.

We hand Alembic a SQLAlchemy connection built on a psycopg connection made with libpq
semantics, so `database_url` may be a URL or key=value string and PG* variables, .pgpass and
service files keep working exactly as they do for psql.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from alembic import command
from pgsync_dossier import pg
from pgsync_dossier.errors import PreconditionFailed, UsageError
from pgsync_dossier.resources import alembic_dir


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(alembic_dir()))
    return cfg


@contextmanager
def sqlalchemy_connection(conninfo: str, what: str = "the dossier database") -> Iterator[Connection]:
    def creator() -> Any:
        conn = pg.connect(conninfo, what=what, autocommit=False, statement_timeout_ms=0)
        conn.row_factory = psycopg.rows.tuple_row  # type: ignore[assignment]
        return conn

    engine = create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> list[str]:
    script = ScriptDirectory.from_config(_alembic_config())
    return [rev.revision for rev in script.walk_revisions()]


def current_revision(conninfo: str) -> str | None:
    with sqlalchemy_connection(conninfo) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def current_revision_on(conn: pg.Connection) -> str | None:
    """The revision recorded in an already open connection's database (None: not migrated)."""
    row = conn.execute(pg.query("migrated", "migrations.sql")).fetchone()
    if not row or not row["migrated"]:
        return None
    version = conn.execute(pg.query("revision", "migrations.sql")).fetchone()
    return str(version["version_num"]) if version else None


def migrate(conninfo: str, target: str = "head") -> tuple[str | None, str | None]:
    """Upgrade or downgrade to `target` ("head", "base" or a revision); returns (before, after)."""
    if target not in ("head", "base") and target not in known_revisions():
        raise UsageError(
            f"unknown revision {target!r}; choose one of: head, base, " + ", ".join(known_revisions())
        )
    cfg = _alembic_config()
    with sqlalchemy_connection(conninfo) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        cfg.attributes["connection"] = connection
        wanted = head_revision() if target == "head" else (None if target == "base" else target)
        if before == wanted:
            return before, before
        try:
            if _is_upgrade(before, wanted):
                command.upgrade(cfg, target)
            else:
                command.downgrade(cfg, target)
        except DBAPIError as exc:
            # A revision that refuses (RAISE EXCEPTION) says why; the transaction rolls back.
            if isinstance(exc.orig, psycopg.errors.RaiseException):
                raise PreconditionFailed(
                    f"migrate refused, nothing was changed: {exc.orig.diag.message_primary}",
                    code="migration_refused",
                ) from None
            raise
        connection.commit()
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


def _is_upgrade(before: str | None, wanted: str | None) -> bool:
    order = list(reversed(known_revisions()))  # base first
    rank = {rev: index for index, rev in enumerate(order)}
    return (rank[wanted] if wanted else -1) > (rank[before] if before else -1)

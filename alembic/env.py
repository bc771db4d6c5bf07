"""Alembic environment: migrations run on a connection handed in by pgsync-dossier.

`pgsync_dossier.migrations` passes its connection through config.attributes["connection"], so
the same scripts run from the CLI and from the tests. Run standalone (`alembic -x
url=postgresql://...`) they open their own connection.
"""

from __future__ import annotations

from sqlalchemy import Connection, create_engine

from alembic import context
from pgsync_dossier.models import metadata

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_schemas=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run pgsync-dossier migrate")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the database as: alembic -x url=postgresql+psycopg://... upgrade head")
    with create_engine(url).connect() as standalone:
        run(standalone)

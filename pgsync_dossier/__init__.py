"""pgsync-dossier: keep dossier (watch) lists in sync across sites with logical replication."""

__version__ = "0.1.0"
#: The schema revision this code reads and writes: the head of alembic/versions (a unit test
#: keeps them equal), known without importing Alembic.
SCHEMA_REVISION = "0013"

"""A next schema revision, for the tests only (never shipped): a nullable column on each table,
as a later pgsync-dossier migration or a DBA's own column for the application would add.

Revision ID: 9000
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "9000"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The order a face insert takes them (its trigger reads the dossier): a migration that
    # takes dossier first deadlocks with the application's writes.
    op.execute("LOCK TABLE public.dossier_face, public.dossier IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE public.dossier ADD COLUMN nickname text")
    op.execute("ALTER TABLE public.dossier_face ADD COLUMN quality real")


def downgrade() -> None:
    op.execute("ALTER TABLE public.dossier_face DROP COLUMN quality")
    op.execute("ALTER TABLE public.dossier DROP COLUMN nickname")

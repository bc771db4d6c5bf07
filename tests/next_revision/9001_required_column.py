"""The revision after, for the tests only: a column every dossier must have (NOT NULL, no
default). No column list absorbs it: a Subscriber that has it cannot insert the rows of a
Leader that has not, so it pauses with `schema_mismatch` until the Leader migrates too.
(A type change is no test of this: PostgreSQL refuses to retype a column a publication
names, so such a migration cannot run on a Leader with Subscribers.)

Revision ID: 9001
Revises: 9000
"""

from __future__ import annotations

from alembic import op

revision = "9001"
down_revision = "9000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE public.dossier ADD COLUMN badge text NOT NULL DEFAULT 'none'")
    op.execute("ALTER TABLE public.dossier ALTER COLUMN badge DROP DEFAULT")


def downgrade() -> None:
    op.execute("ALTER TABLE public.dossier DROP COLUMN badge")

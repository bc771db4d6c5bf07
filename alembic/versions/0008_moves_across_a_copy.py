"""Moves between lists survive a copy: a BRIN index on row_version, and link.settle_since.

A copy or repair in a group with other lists settles those lists' rows written since it
began (compare.settle_neighbours): `row_version > position`. Without an index that read every
row of the other lists, which on dossier_face (2 KB embeddings) took 120 ms per 300,000 rows.
Rows are written, and moved, at the end of the heap or into freed space, so a block range
index finds the recent ones by visiting a few ranges; it costs next to nothing to keep.

`pgsync.link.settle_since` keeps that position (the Leader's WAL position) from the first
attempt of a copy until it is done: a copy killed after writing its rows is finished by a
later command, which must settle from the first attempt's position, not from its own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX dossier_row_version_idx ON public.dossier USING brin (row_version);
        CREATE INDEX dossier_face_row_version_idx ON public.dossier_face USING brin (row_version);
        ALTER TABLE pgsync.link ADD COLUMN settle_since bigint;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.link DROP COLUMN settle_since;
        DROP INDEX public.dossier_face_row_version_idx;
        DROP INDEX public.dossier_row_version_idx;
        """
    )

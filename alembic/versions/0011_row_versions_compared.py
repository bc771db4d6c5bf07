"""A comparison reads each row's version as well as its content hash.

verify and the in-place repair compared content hashes only, which leave out row_version. A
face whose dossier moved to another list and back while a window was closed has the same
content and a newer version on the Leader; a repair in place (of a backlog, of a lost slot)
left the replica's face at the older version, and the apply trigger, which orders a row's
moves between two groups' lists by that version, could then let another stream's older move
win. The comparison now covers the version too (sql/compare.sql), and the index it scans
carries it, so it stays an index-only scan.

Both tables' (dossier_list_id, id) INCLUDE (content_hash) indexes are rebuilt with
row_version included. Writes to the two tables wait while they are built: a few seconds per
million rows. Until a node has this revision its side of a comparison reads the heap instead
(the same result, slower).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _rebuild(include: str) -> None:
    """Both indexes built beside the old ones while writes wait (reads go on), then swapped:
    reads wait only for the swap."""
    # The order a face insert takes the tables (its trigger reads the dossier): a migration
    # that takes dossier first deadlocks with the application's writes.
    op.execute("LOCK TABLE public.dossier_face, public.dossier IN SHARE MODE")
    for table in ("dossier_face", "dossier"):
        op.execute(
            f"CREATE INDEX {table}_dossier_list_id_id_idx_new ON public.{table} (dossier_list_id, id) "
            f"INCLUDE ({include})"
        )
    for table in ("dossier_face", "dossier"):
        op.execute(f"DROP INDEX public.{table}_dossier_list_id_id_idx")
        op.execute(
            f"ALTER INDEX public.{table}_dossier_list_id_id_idx_new RENAME TO {table}_dossier_list_id_id_idx"
        )


def upgrade() -> None:
    _rebuild("content_hash, row_version")


def downgrade() -> None:
    _rebuild("content_hash")

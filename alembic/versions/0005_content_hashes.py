"""A content hash on every dossier and face, for verify and in-place repair; self-healing.

Comparing a Leader list with its replica used to mean hashing every row on both sides (2 KB
of embedding per face): as costly as copying the list again. Now each server keeps a 64-bit
hash of each row's content in a generated column, computed from what that server actually
holds (a Subscriber computes its own, so a replica row changed behind the guard's back shows
it). An index on (list, id) that includes the hash lets both sides aggregate a list per chunk
of ids with an index-only scan; only chunks that differ are compared row by row.

The hash combines one hash per field, each with its own seed; it leaves out the list id (it
differs between the two sides) and row_version (metadata, not content). Every function used
is immutable and the same on 15 and later; hashes agree between servers of one byte order.

For faces the new index replaces the one on (dossier_list_id) alone: it serves the same
queries, so a copy maintains as many indexes as before.

Also, on the Subscriber: a link state 'repairing' (an in-place repair is owed: after a lost
slot, say; a crash in the middle leaves it owed), the slot position a group's stream had
confirmed when it last stopped (so a stream that someone else consumed meanwhile is noticed
before it is enabled again), and where this node was set up (a database restored or cloned
elsewhere gets a new identity at its next setup).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _stamp(column: str, seed: int) -> str:
    """A timestamp's hash, the same on every version: that of its microseconds since the epoch
    (PostgreSQL 15 has no timestamptz hash function; this expression is immutable on all)."""
    epoch = "'1970-01-01 00:00:00+00'::timestamptz"
    return f"hashint8extended((extract(epoch from ({column} - {epoch})) * 1000000)::bigint, {seed})"


DOSSIER_HASH = (
    "uuid_hash_extended(id, 1) # hashtextextended(name, 2) # hashtextextended(comment, 3)"
    f" # hashint4extended(active::integer, 4) # {_stamp('created_at', 5)} # {_stamp('modified_at', 6)}"
)
FACE_HASH = (
    "uuid_hash_extended(id, 1) # uuid_hash_extended(dossier_id, 2)"
    " # hashtextextended(encode(embedding, 'hex'), 3) # hashtextextended(model, 4)"
    f" # {_stamp('created_at', 5)}"
)


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE public.dossier
            ADD COLUMN content_hash bigint GENERATED ALWAYS AS ({DOSSIER_HASH}) STORED;
        ALTER TABLE public.dossier_face
            ADD COLUMN content_hash bigint GENERATED ALWAYS AS ({FACE_HASH}) STORED;
        CREATE INDEX dossier_dossier_list_id_id_idx ON public.dossier (dossier_list_id, id)
            INCLUDE (content_hash);
        CREATE INDEX dossier_face_dossier_list_id_id_idx ON public.dossier_face (dossier_list_id, id)
            INCLUDE (content_hash);
        DROP INDEX public.dossier_face_dossier_list_id_idx;
        ALTER TABLE pgsync.link DROP CONSTRAINT link_link_state_check_check;
        ALTER TABLE pgsync.link ADD CONSTRAINT link_link_state_check_check CHECK
            (state IN ('attaching', 'copying', 'ready', 'paused', 'detaching', 'error', 'repairing'));
        """
    )
    op.add_column("sync_group", sa.Column("stopped_at_lsn", sa.BigInteger), schema="pgsync")
    op.add_column("node", sa.Column("placement", sa.Text), schema="pgsync")
    op.add_column("sync_run", sa.Column("note", sa.Text), schema="pgsync")


def downgrade() -> None:
    op.drop_column("sync_run", "note", schema="pgsync")
    op.drop_column("node", "placement", schema="pgsync")
    op.drop_column("sync_group", "stopped_at_lsn", schema="pgsync")
    op.execute(
        """
        UPDATE pgsync.link SET state = 'attaching' WHERE state = 'repairing';
        ALTER TABLE pgsync.link DROP CONSTRAINT link_link_state_check_check;
        ALTER TABLE pgsync.link ADD CONSTRAINT link_link_state_check_check CHECK
            (state IN ('attaching', 'copying', 'ready', 'paused', 'detaching', 'error'));
        CREATE INDEX dossier_face_dossier_list_id_idx ON public.dossier_face (dossier_list_id);
        DROP INDEX public.dossier_face_dossier_list_id_id_idx;
        DROP INDEX public.dossier_dossier_list_id_id_idx;
        ALTER TABLE public.dossier_face DROP COLUMN content_hash;
        ALTER TABLE public.dossier DROP COLUMN content_hash;
        """
    )

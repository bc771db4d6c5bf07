"""A Subscriber (or relay) promoted from its physical standby repairs its replicas in place.

The standby replays its primary's WAL asynchronously, but the Leader's slots moved on as far
as the old primary had applied: after a promotion the changes in between are neither here
nor coming. The node remembers the WAL timeline its database was on (`timeline`, filled in
here); a later one with the same system and database means a promotion (or a point-in-time
recovery) happened since, and every replica owes a repair in place (placement.py,
"promoted"). A list paused for its face model keeps its pause and owes the repair when it
resumes (`link.repair_owed`), as after a move to a fallback upstream.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.node ADD COLUMN timeline integer;
        UPDATE pgsync.node
           SET timeline = ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))
                          ::bit(32)::integer;
        ALTER TABLE pgsync.link ADD COLUMN repair_owed boolean NOT NULL DEFAULT false;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE pgsync.link SET state = 'repairing' WHERE repair_owed;  -- as revisions before did
        ALTER TABLE pgsync.node DROP COLUMN timeline;
        ALTER TABLE pgsync.link DROP COLUMN repair_owed;
        """
    )

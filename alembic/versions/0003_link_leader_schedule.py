"""Remember the Leader's schedule on each link, and which window each sync served.

Also: a Leader list has at most one replica per Subscriber, enforced by the catalog, so two
concurrent attaches of one Leader list into two local lists cannot both succeed.

The Leader's schedule is authoritative, but `tick` must know when a window is due even while
the Leader is unreachable: each sync stores the schedule the Leader last announced. A
scheduled sync records the occurrence it served, so that window is not due again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("link", sa.Column("leader_schedule", sa.Text), schema="pgsync")
    op.create_unique_constraint(
        "link_leader_id_remote_list_id_key", "link", ["leader_id", "remote_list_id"], schema="pgsync"
    )
    op.add_column(
        "sync_run", sa.Column("window_at", sa.dialects.postgresql.TIMESTAMP(timezone=True)), schema="pgsync"
    )


def downgrade() -> None:
    op.drop_column("sync_run", "window_at", schema="pgsync")
    op.drop_constraint("link_leader_id_remote_list_id_key", "link", schema="pgsync")
    op.drop_column("link", "leader_schedule", schema="pgsync")

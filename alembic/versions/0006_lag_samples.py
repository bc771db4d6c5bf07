"""Lag samples on the Subscriber: how far behind each group was, over the last 30 days.

`status` shows the lag now; an operator looking for the site that fell behind last week needs
its history. Every scheduler probe records one sample per group (and a successful sync one
of no lag), so the web page can chart each list's lag per hour next to its syncs per day.
Samples older than the sync history (30 days) are pruned with it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "pgsync"


def upgrade() -> None:
    op.create_table(
        "lag_sample",
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column(
            "sampled_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.Column("lag_bytes", sa.BigInteger),
        sa.Column("lag_seconds", sa.Double),
        sa.ForeignKeyConstraint(
            ["group_id"], [f"{SCHEMA}.sync_group.id"], name="lag_sample_group_id_fkey", ondelete="CASCADE"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "lag_sample_group_id_sampled_at_idx", "lag_sample", ["group_id", "sampled_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("lag_sample", schema=SCHEMA)

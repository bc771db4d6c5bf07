"""The pgsync catalog: this node, heartbeats, publications, links, sync runs.

The heartbeat table is replicated with each list (row-filtered on list_id) and follows the
same pattern as dossiers: a UUID primary key (the Subscriber's identity) and a unique
(id, list_id) index (the Leader's replica identity), so the Subscriber can remap list ids.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "pgsync"


def _ts(name: str, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        postgresql.TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.text("now()") if default else None,
    )


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    op.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
    op.create_table(
        "node",
        sa.Column("id", sa.Boolean, primary_key=True, server_default=sa.text("true")),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("node_name", sa.Text, nullable=False),
        sa.Column("face_model", sa.Text, nullable=False),
        sa.Column("token_verifier", sa.Text, nullable=False),
        sa.Column("sync_schedule", sa.Text),
        sa.Column("sync_at_startup", sa.Boolean, nullable=False),
        sa.Column("sync_at_creation", sa.Boolean, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("id", name="node_singleton_check"),
        sa.CheckConstraint("role IN ('leader', 'subscriber')", name="node_role_check"),
        schema=SCHEMA,
    )
    op.create_table(
        "heartbeat",
        sa.Column(
            "id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "beat_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.UniqueConstraint("list_id", name="heartbeat_list_id_key"),
        sa.UniqueConstraint("id", "list_id", name="heartbeat_id_list_id_key"),
        schema=SCHEMA,
    )
    op.execute(f"ALTER TABLE {SCHEMA}.heartbeat REPLICA IDENTITY USING INDEX heartbeat_id_list_id_key")
    op.create_table(
        "publication",
        sa.Column("list_id", sa.Integer, primary_key=True),
        sa.Column("publication_name", sa.Text, nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["list_id"], ["public.dossier_list.id"], name="publication_list_id_fkey"),
        sa.UniqueConstraint("publication_name", name="publication_publication_name_key"),
        schema=SCHEMA,
    )
    op.create_table(
        "subscriber_link",
        sa.Column("slot_name", sa.Text, primary_key=True),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("subscriber_node", sa.Text, nullable=False),
        sa.Column("subscriber_list_id", sa.Integer, nullable=False),
        _ts("registered_at"),
        sa.ForeignKeyConstraint(
            ["list_id"], [f"{SCHEMA}.publication.list_id"], name="subscriber_link_list_id_fkey"
        ),
        sa.UniqueConstraint(
            "subscriber_node",
            "subscriber_list_id",
            name="subscriber_link_subscriber_node_subscriber_list_id_key",
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "link",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("local_list_id", sa.Integer, nullable=False),
        sa.Column("remote_list_id", sa.Integer, nullable=False),
        sa.Column("leader_url", sa.Text, nullable=False),
        sa.Column("leader_id", sa.Text, nullable=False),
        sa.Column("leader_node_name", sa.Text),
        sa.Column("subscription_name", sa.Text, nullable=False),
        sa.Column("slot_name", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'attaching'")),
        sa.Column("schedule", sa.Text),
        sa.Column("leader_available", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("leader_unavailable_since", postgresql.TIMESTAMP(timezone=True)),
        sa.Column("last_error", sa.Text),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["local_list_id"], ["public.dossier_list.id"], name="link_local_list_id_fkey"
        ),
        sa.UniqueConstraint("local_list_id", name="link_local_list_id_key"),
        sa.UniqueConstraint("subscription_name", name="link_subscription_name_key"),
        sa.UniqueConstraint("slot_name", name="link_slot_name_key"),
        sa.CheckConstraint(
            "state IN ('attaching', 'copying', 'ready', 'paused', 'detaching', 'error')",
            name="link_state_check",
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "sync_run",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True, default=False),
        sa.Column("barrier_seq", sa.BigInteger),
        sa.Column("ok", sa.Boolean),
        sa.Column("error", sa.Text),
        sa.Column("rows_applied", sa.BigInteger),
        sa.ForeignKeyConstraint(
            ["link_id"], [f"{SCHEMA}.link.id"], name="sync_run_link_id_fkey", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "reason IN ('schedule', 'startup', 'creation', 'manual')", name="sync_run_reason_check"
        ),
        schema=SCHEMA,
    )
    op.create_index("sync_run_link_id_started_at_idx", "sync_run", ["link_id", "started_at"], schema=SCHEMA)
    op.create_table(
        "orphan_slot",
        sa.Column("slot_name", sa.Text, primary_key=True),
        sa.Column("leader_url", sa.Text, nullable=False),
        sa.Column("leader_id", sa.Text, nullable=False),
        _ts("detached_at"),
        sa.Column("last_error", sa.Text),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")

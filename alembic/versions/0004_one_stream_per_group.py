"""One replication stream per (Leader, Subscriber, schedule): groups instead of per-list links.

Version 1 gave every replicated list its own publication, subscription and slot, which breaks
as soon as one Subscriber replicates several lists of one Leader (docs/design-notes.md, "Version 2"). From
here on:
- `pgsync.sync_group` (Subscriber): one row per stream, i.e. per (Leader, schedule override);
  its name is the subscription's, the slot's and the Leader publication's. Each link belongs
  to one group; what a link used to carry about its Leader (URL, schedule, reachability) is
  the group's.
- `pgsync.group_registration` (Leader): the lists each group's publication filters on.
- `pgsync.heartbeat` is keyed by group name (its primary key is the row filter column, so it
  needs no remapping on the Subscriber); `pgsync.sync_run` records syncs per group.
- `row_version` on dossier and dossier_face: the Leader's WAL insert position when the row was
  last written. Rows may move between lists replicated by two streams (two schedules) that
  arrive in either order; the Subscriber keeps the newer version (docs/design-notes.md).
- `pgsync.node.node_tag`: a random name for this node, used in its group names.

Existing version-1 links are kept: each is put into the group of its Leader and schedule in
state 'attaching', its old subscription disabled and remembered in `legacy_subscription`. The
next `setup`, `attach`, `sync` or `tick` copies it into its group in place (upsert, then the
rows its Leader list no longer has are deleted) and drops the old subscription and slot. No
list is emptied. The sync history of version 1 is not kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "pgsync"
SYNC_REASONS = "('schedule', 'startup', 'creation', 'manual', 'repair', 'heal')"
NODE_TAG_DEFAULT = "substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)"


def _ts(name: str, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        postgresql.TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.text("now()") if default else None,
    )


def upgrade() -> None:
    # -- row versions (every node; only the Leader's values travel) -------------------------
    for table in ("dossier", "dossier_face"):
        op.add_column(
            table, sa.Column("row_version", sa.BigInteger, nullable=False, server_default=sa.text("0"))
        )
    op.execute(
        """
        CREATE FUNCTION public.stamp_row_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            -- Taken after the row lock: a later writer of the same row always stamps higher.
            NEW.row_version := (pg_catalog.pg_current_wal_insert_lsn() OPERATOR(pg_catalog.-)
                                '0/0'::pg_catalog.pg_lsn)::bigint;
            RETURN NEW;
        END $$;
        CREATE TRIGGER dossier_stamp_row_version BEFORE INSERT OR UPDATE ON public.dossier
            FOR EACH ROW EXECUTE FUNCTION public.stamp_row_version();
        CREATE TRIGGER dossier_face_stamp_row_version BEFORE INSERT OR UPDATE ON public.dossier_face
            FOR EACH ROW EXECUTE FUNCTION public.stamp_row_version();
        """
    )

    # -- this node's random tag --------------------------------------------------------------
    op.add_column(
        "node",
        sa.Column("node_tag", sa.Text, nullable=False, server_default=sa.text(NODE_TAG_DEFAULT)),
        schema=SCHEMA,
    )

    # -- groups (Subscriber) ------------------------------------------------------------------
    op.create_table(
        "sync_group",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("leader_id", sa.Text, nullable=False),
        sa.Column("leader_url", sa.Text, nullable=False),
        sa.Column("leader_node_name", sa.Text),
        sa.Column("schedule", sa.Text),
        sa.Column("leader_schedule", sa.Text),
        sa.Column("leader_available", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("leader_unavailable_since", postgresql.TIMESTAMP(timezone=True)),
        sa.Column("copying_list_id", sa.Integer),
        sa.Column("paused_until", postgresql.TIMESTAMP(timezone=True)),
        sa.Column("last_error", sa.Text),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("name", name="sync_group_name_key"),
        sa.UniqueConstraint(
            "leader_id",
            "schedule",
            name="sync_group_leader_id_schedule_key",
            postgresql_nulls_not_distinct=True,
        ),
        sa.CheckConstraint("name ~ '^pgsync_[a-z0-9_]+$'", name="sync_group_name_check"),
        schema=SCHEMA,
    )

    # -- links join groups ----------------------------------------------------------------------
    op.add_column("link", sa.Column("group_id", sa.Integer), schema=SCHEMA)
    op.add_column("link", sa.Column("copy_expected", sa.BigInteger), schema=SCHEMA)
    op.alter_column("link", "subscription_name", new_column_name="legacy_subscription", schema=SCHEMA)
    op.alter_column("link", "legacy_subscription", nullable=True, schema=SCHEMA)
    op.execute(
        f"""
        -- Version-1 subscriptions stop here: each list is copied into its group before any
        -- stream writes it again (two streams must never apply the same list).
        DO $$
        DECLARE
            v_name text;
        BEGIN
            FOR v_name IN
                SELECT s.subname FROM pg_catalog.pg_subscription AS s
                  JOIN {SCHEMA}.link AS k ON k.legacy_subscription = s.subname
                 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                                     WHERE datname = pg_catalog.current_database())
            LOOP
                EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I DISABLE', v_name);
            END LOOP;
        END $$;
        INSERT INTO {SCHEMA}.sync_group (name, leader_id, leader_url, leader_node_name, schedule,
                                          leader_schedule, leader_available, leader_unavailable_since)
        SELECT DISTINCT ON (k.leader_id, k.schedule)
               'pgsync_' || (SELECT n.node_tag FROM {SCHEMA}.node AS n) || '_pending_'
                   || pg_catalog.row_number() OVER (),
               k.leader_id, k.leader_url, k.leader_node_name, k.schedule, k.leader_schedule,
               k.leader_available, k.leader_unavailable_since
          FROM {SCHEMA}.link AS k
         ORDER BY k.leader_id, k.schedule, k.updated_at DESC;
        UPDATE {SCHEMA}.sync_group AS g
           SET name = 'pgsync_' || (SELECT n.node_tag FROM {SCHEMA}.node AS n) || '_g' || g.id;
        UPDATE {SCHEMA}.link AS k SET group_id = g.id, state = 'attaching'
          FROM {SCHEMA}.sync_group AS g
         WHERE g.leader_id = k.leader_id AND g.schedule IS NOT DISTINCT FROM k.schedule;
        """
    )
    op.alter_column("link", "group_id", nullable=False, schema=SCHEMA)
    op.create_foreign_key(
        "link_group_id_fkey",
        "link",
        "sync_group",
        ["group_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )
    op.create_index("link_group_id_idx", "link", ["group_id"], schema=SCHEMA)
    op.drop_constraint("link_slot_name_key", "link", schema=SCHEMA)
    op.drop_constraint("link_subscription_name_key", "link", schema=SCHEMA)
    for column in (
        "slot_name",
        "leader_url",
        "leader_node_name",
        "schedule",
        "leader_schedule",
        "leader_available",
        "leader_unavailable_since",
    ):
        op.drop_column("link", column, schema=SCHEMA)

    # -- heartbeats and sync runs, per group --------------------------------------------------
    op.drop_table("heartbeat", schema=SCHEMA)
    op.create_table(
        "heartbeat",
        sa.Column("group_name", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "beat_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        schema=SCHEMA,
    )
    op.drop_table("sync_run", schema=SCHEMA)
    op.create_table(
        "sync_run",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True, default=False),
        sa.Column("window_at", postgresql.TIMESTAMP(timezone=True)),
        sa.Column("barrier_seq", sa.BigInteger),
        sa.Column("ok", sa.Boolean),
        sa.Column("error", sa.Text),
        sa.ForeignKeyConstraint(
            ["group_id"], [f"{SCHEMA}.sync_group.id"], name="sync_run_group_id_fkey", ondelete="CASCADE"
        ),
        sa.CheckConstraint(f"reason IN {SYNC_REASONS}", name="sync_run_reason_check"),
        schema=SCHEMA,
    )
    op.create_index("sync_run_group_id_started_at_idx", "sync_run", ["group_id", "started_at"], schema=SCHEMA)

    # -- the Leader's registry of group publications -------------------------------------------
    op.create_table(
        "group_registration",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("subscriber_node", sa.Text, nullable=False),
        sa.Column("lists", postgresql.ARRAY(sa.Integer), nullable=False),
        _ts("registered_at"),
        _ts("updated_at"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("group_registration", schema=SCHEMA)
    op.drop_table("sync_run", schema=SCHEMA)
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
        sa.Column("window_at", postgresql.TIMESTAMP(timezone=True)),
        sa.ForeignKeyConstraint(
            ["link_id"], [f"{SCHEMA}.link.id"], name="sync_run_link_id_fkey", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "reason IN ('schedule', 'startup', 'creation', 'manual')", name="sync_run_reason_check"
        ),
        schema=SCHEMA,
    )
    op.create_index("sync_run_link_id_started_at_idx", "sync_run", ["link_id", "started_at"], schema=SCHEMA)
    op.drop_table("heartbeat", schema=SCHEMA)
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
    # A version-2 link cannot become a version-1 one: its group's stream is not per list.
    op.execute(f"DELETE FROM {SCHEMA}.link")
    op.add_column("link", sa.Column("leader_url", sa.Text, nullable=False), schema=SCHEMA)
    op.add_column("link", sa.Column("leader_node_name", sa.Text), schema=SCHEMA)
    op.add_column("link", sa.Column("slot_name", sa.Text, nullable=False), schema=SCHEMA)
    op.add_column("link", sa.Column("schedule", sa.Text), schema=SCHEMA)
    op.add_column("link", sa.Column("leader_schedule", sa.Text), schema=SCHEMA)
    op.add_column(
        "link",
        sa.Column("leader_available", sa.Boolean, nullable=False, server_default=sa.text("true")),
        schema=SCHEMA,
    )
    op.add_column(
        "link", sa.Column("leader_unavailable_since", postgresql.TIMESTAMP(timezone=True)), schema=SCHEMA
    )
    op.alter_column("link", "legacy_subscription", new_column_name="subscription_name", schema=SCHEMA)
    op.alter_column("link", "subscription_name", nullable=False, schema=SCHEMA)
    op.create_unique_constraint("link_subscription_name_key", "link", ["subscription_name"], schema=SCHEMA)
    op.create_unique_constraint("link_slot_name_key", "link", ["slot_name"], schema=SCHEMA)
    op.drop_index("link_group_id_idx", "link", schema=SCHEMA)
    op.drop_constraint("link_group_id_fkey", "link", schema=SCHEMA)
    op.drop_column("link", "copy_expected", schema=SCHEMA)
    op.drop_column("link", "group_id", schema=SCHEMA)
    op.drop_table("sync_group", schema=SCHEMA)
    op.drop_column("node", "node_tag", schema=SCHEMA)
    op.execute(
        "DROP TRIGGER dossier_stamp_row_version ON public.dossier;"
        "DROP TRIGGER dossier_face_stamp_row_version ON public.dossier_face;"
        "DROP FUNCTION public.stamp_row_version()"
    )
    for table in ("dossier", "dossier_face"):
        op.drop_column(table, "row_version")

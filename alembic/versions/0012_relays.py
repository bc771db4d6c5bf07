"""Relays: a node may be a Subscriber that publishes the lists it replicates on (issue #28).

A relay records its role as 'relay' (the check keeps the name migration 0002 gave it). A relay
keeps its Leader's list ids and `(id, dossier_list_id)` replica identity (docs/design-notes.md,
"Relays"). A group may name fallback upstreams (another relay, or the Leader itself) that
`tick` moves it to when its own stays unreachable (pgsync_dossier/fallback.py). A group keeps
its upstream's face model: a relay whose Leader changed models says so to its own downstream.
A link keeps the identity of the Leader its list comes from, through any relays (`origin_id`):
one replica per Leader list, and a fallback must serve the same Leader's list.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.node DROP CONSTRAINT node_node_role_check_check,
            ADD CONSTRAINT node_node_role_check_check CHECK (role IN ('leader', 'subscriber', 'relay'));
        ALTER TABLE pgsync.sync_group ADD COLUMN fallback_urls text[] NOT NULL DEFAULT '{}',
            ADD COLUMN leader_face_model text;
        ALTER TABLE pgsync.link ADD COLUMN origin_id text;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pgsync.node WHERE role = 'relay') THEN
                RAISE EXCEPTION 'this node is a relay, which revisions before 0012 do not know: detach its '
                    'downstream Subscribers, then set it up with role subscriber before going back';
            END IF;
        END
        $$;
        ALTER TABLE pgsync.sync_group DROP COLUMN fallback_urls, DROP COLUMN leader_face_model;
        ALTER TABLE pgsync.link DROP COLUMN origin_id;
        ALTER TABLE pgsync.node DROP CONSTRAINT node_node_role_check_check,
            ADD CONSTRAINT node_node_role_check_check CHECK (role IN ('leader', 'subscriber'))
        """
    )

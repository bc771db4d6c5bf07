"""A deployment's life: identities that survive `pg_upgrade`.

`pg_upgrade` makes a new cluster, hence a new system identifier and data directory. A
Leader's identity was its system identifier and database name, so after an upgrade its
Subscribers took it for another Leader (new login names, new groups); now `setup` records
that identity once in `pgsync.node.leader_id` and the Leader keeps it for good.

A Subscriber that finds its database elsewhere takes itself for a copy and asks for a new
identity (see node._settle_identity). `prepare-upgrade` records where it lived in
`pgsync.node.upgrading_from`: a database that then appears under a new system identifier
but with the same database OID (pg_upgrade keeps OIDs) is the same node, moved.

Sites upgrade pgsync-dossier one at a time: `setup` records the version it ran
(`software_version`), which a Leader tells its Subscribers with its schema revision, so that
a skew a stream cannot carry pauses with a message that names the node to migrate.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.node ADD COLUMN leader_id text;
        ALTER TABLE pgsync.node ADD COLUMN upgrading_from text;
        ALTER TABLE pgsync.node ADD COLUMN software_version text;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.node DROP COLUMN software_version;
        ALTER TABLE pgsync.node DROP COLUMN upgrading_from;
        ALTER TABLE pgsync.node DROP COLUMN leader_id;
        """
    )

"""Least privilege: one login per Subscriber on a Leader, named API tokens on every node.

The sync token used to derive the password of one Leader login with REPLICATION, shared by
every Subscriber: whoever held the token could decode the whole Leader database, copy the
cluster with pg_basebackup, and drop any Subscriber's slot. Now the token only opens an
enrollment login without REPLICATION, whose one function gives a Subscriber a login of its
own (`subscriber_login` on the Leader, `leader_login` on the Subscriber: the password itself
lives in a file only the Subscriber's server can read). A Leader may require that an operator
approve each new Subscriber (`node.enrollment`).

The HTTP API and the web page no longer take the sync token either: `api_token` holds named
tokens, stored as SHA-256 hashes (they are 256-bit random strings, so a slow hash adds
nothing), optionally read-only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgsync.node ADD COLUMN enrollment text NOT NULL DEFAULT 'auto'
            CONSTRAINT node_enrollment_check CHECK (enrollment IN ('auto', 'manual'));

        CREATE TABLE pgsync.subscriber_login (
            login text PRIMARY KEY,
            node_tag text NOT NULL CONSTRAINT subscriber_login_node_tag_key UNIQUE,
            node_name text NOT NULL CONSTRAINT subscriber_login_node_name_key UNIQUE,
            state text NOT NULL CONSTRAINT subscriber_login_state_check
                CHECK (state IN ('pending', 'active', 'approved', 'revoked')),
            requested_at timestamptz NOT NULL DEFAULT now(),
            approved_at timestamptz,
            revoked_at timestamptz
        );

        CREATE TABLE pgsync.leader_login (
            leader_id text PRIMARY KEY,
            login text NOT NULL,
            leader_url text NOT NULL,
            token_check text,
            enrolled_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE pgsync.api_token (
            name text PRIMARY KEY CONSTRAINT api_token_name_check CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
            token_hash text NOT NULL CONSTRAINT api_token_token_hash_key UNIQUE,
            read_only boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz
        );
        -- Secrets' hashes: for the orchestrator's login alone.
        REVOKE ALL ON pgsync.subscriber_login, pgsync.leader_login, pgsync.api_token FROM PUBLIC;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE pgsync.api_token;
        DROP TABLE pgsync.leader_login;
        DROP TABLE pgsync.subscriber_login;
        ALTER TABLE pgsync.node DROP COLUMN enrollment;
        """
    )

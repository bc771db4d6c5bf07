"""Verified, continuously: each verification of a replica is kept.

`verify` used to print its result and forget it. Now every verification, scheduled by
`verify_schedule` or asked for, is a row of `pgsync.verification`: when, at which Leader WAL
position, equal or not, what differed per table and kind, how long it took. `status`, the API,
the web page and `/metrics` show each list's latest. The barrier sync a verification runs first
is recorded with its own reason, `verify`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgsync.verification (
            id bigserial PRIMARY KEY,
            local_list_id integer NOT NULL,
            remote_list_id integer NOT NULL,
            reason text NOT NULL CONSTRAINT verification_reason_check
                CHECK (reason IN ('schedule', 'manual', 'repair')),
            started_at timestamptz NOT NULL,
            finished_at timestamptz NOT NULL DEFAULT now(),
            leader_lsn bigint,
            equal boolean,
            dossiers_missing integer,
            dossiers_extra integer,
            dossiers_changed integer,
            faces_missing integer,
            faces_extra integer,
            faces_changed integer,
            error text
        );
        CREATE INDEX verification_local_list_id_finished_at_idx
            ON pgsync.verification (local_list_id, finished_at);
        """
    )
    _replace_reason_check("('schedule', 'startup', 'creation', 'manual', 'repair', 'heal', 'verify')")


def _replace_reason_check(reasons: str) -> None:
    """sync_run's reason check, under whichever name an earlier revision gave it."""
    op.execute(
        f"""
        DO $$
        DECLARE
            v_name text;
        BEGIN
            SELECT conname INTO v_name FROM pg_catalog.pg_constraint
             WHERE conrelid = 'pgsync.sync_run'::regclass AND contype = 'c'
               AND pg_catalog.pg_get_constraintdef(oid) LIKE '%reason%';
            IF v_name IS NOT NULL THEN
                EXECUTE pg_catalog.format('ALTER TABLE pgsync.sync_run DROP CONSTRAINT %I', v_name);
            END IF;
        END
        $$;
        ALTER TABLE pgsync.sync_run ADD CONSTRAINT sync_run_reason_check CHECK (reason IN {reasons});
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM pgsync.sync_run WHERE reason = 'verify';
        DROP TABLE pgsync.verification;
        """
    )
    _replace_reason_check("('schedule', 'startup', 'creation', 'manual', 'repair', 'heal')")

"""The reference dossier database: lists, dossiers, faces.

Built to the constraints that replication needs (docs/design-notes.md; docs/architecture.md, "Schema"):
- replica identity on (id, dossier_list_id), so UPDATE/DELETE work under row-filtered
  publications (a Subscriber's `setup` switches its own tables back to the primary key);
- embeddings and text kept inline (STORAGE MAIN plus size checks), so a row moved into a
  published list never arrives without its unchanged TOASTed values;
- faces reference (dossier id, list id) with ON UPDATE CASCADE, so moving a dossier moves its
  faces in the same transaction.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.Column(
            "modified_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "dossier_list",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        *_timestamps(),
        sa.UniqueConstraint("name", name="dossier_list_name_key"),
    )
    op.create_table(
        "dossier",
        sa.Column(
            "id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column("dossier_list_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["dossier_list_id"], ["dossier_list.id"], name="dossier_dossier_list_id_fkey"
        ),
        sa.UniqueConstraint("id", "dossier_list_id", name="dossier_id_dossier_list_id_key"),
        sa.CheckConstraint("octet_length(name) BETWEEN 1 AND 1000", name="dossier_name_size_check"),
        sa.CheckConstraint("octet_length(comment) <= 4000", name="dossier_comment_size_check"),
    )
    op.create_index("dossier_dossier_list_id_name_idx", "dossier", ["dossier_list_id", "name"])
    op.create_table(
        "dossier_face",
        sa.Column(
            "id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column("dossier_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("dossier_list_id", sa.Integer, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column(
            "created_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.UniqueConstraint("id", "dossier_list_id", name="dossier_face_id_dossier_list_id_key"),
        sa.ForeignKeyConstraint(
            ["dossier_id", "dossier_list_id"],
            ["dossier.id", "dossier.dossier_list_id"],
            name="dossier_face_dossier_id_dossier_list_id_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "octet_length(embedding) BETWEEN 1 AND 7168", name="dossier_face_embedding_size_check"
        ),
        sa.CheckConstraint("octet_length(model) BETWEEN 1 AND 200", name="dossier_face_model_size_check"),
    )
    op.create_index("dossier_face_dossier_list_id_idx", "dossier_face", ["dossier_list_id"])
    op.create_index(
        "dossier_face_dossier_id_dossier_list_id_idx", "dossier_face", ["dossier_id", "dossier_list_id"]
    )

    op.execute(
        """
        ALTER TABLE public.dossier
            ALTER COLUMN name SET STORAGE MAIN,
            ALTER COLUMN comment SET STORAGE MAIN,
            REPLICA IDENTITY USING INDEX dossier_id_dossier_list_id_key;
        ALTER TABLE public.dossier_face
            ALTER COLUMN embedding SET STORAGE MAIN,
            ALTER COLUMN model SET STORAGE MAIN,
            REPLICA IDENTITY USING INDEX dossier_face_id_dossier_list_id_key;

        -- Applications may omit a face's list: it is the list of its dossier.
        CREATE FUNCTION public.dossier_face_fill_list() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
        BEGIN
            SELECT d.dossier_list_id INTO NEW.dossier_list_id
              FROM public.dossier AS d WHERE d.id = NEW.dossier_id;
            IF NEW.dossier_list_id IS NULL THEN
                RAISE foreign_key_violation USING
                    MESSAGE = format('dossier %s does not exist', NEW.dossier_id),
                    HINT = 'insert the dossier before its faces';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER dossier_face_fill_list BEFORE INSERT ON public.dossier_face
            FOR EACH ROW WHEN (NEW.dossier_list_id IS NULL)
            EXECUTE FUNCTION public.dossier_face_fill_list();

        -- modified_at follows every edit unless the statement sets it itself.
        CREATE FUNCTION public.touch_modified_at() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
        BEGIN
            IF NEW.modified_at IS NOT DISTINCT FROM OLD.modified_at THEN
                NEW.modified_at := pg_catalog.now();
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER dossier_list_touch_modified_at BEFORE UPDATE ON public.dossier_list
            FOR EACH ROW EXECUTE FUNCTION public.touch_modified_at();
        CREATE TRIGGER dossier_touch_modified_at BEFORE UPDATE ON public.dossier
            FOR EACH ROW EXECUTE FUNCTION public.touch_modified_at();
        """
    )


def downgrade() -> None:
    op.drop_table("dossier_face")
    op.drop_table("dossier")
    op.drop_table("dossier_list")
    op.execute("DROP FUNCTION public.dossier_face_fill_list(); DROP FUNCTION public.touch_modified_at();")

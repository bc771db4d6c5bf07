-- The schema revision Alembic recorded (pgsync_dossier/migrations.py).

-- name: migrated
SELECT pg_catalog.to_regclass('public.alembic_version') IS NOT NULL AS migrated;

-- name: revision
SELECT version_num FROM public.alembic_version;

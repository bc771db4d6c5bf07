-- The dossier tables' columns and schema revision, read on either side (pgsync_dossier/schema_skew.py).

-- The columns a stream carries (every stored column; generated ones are never published),
-- read on the Leader and here alike (schema_skew.py).
-- name: dossier_columns
SELECT c.relname AS table_name, a.attname AS column_name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.atthasdef AS has_default
  FROM pg_catalog.pg_attribute AS a
  JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname IN ('dossier', 'dossier_face')
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY c.relname, a.attnum;

-- This database's schema revision (what migrations.current_revision_on reads, without Alembic).
-- name: schema_revision
SELECT version_num AS revision FROM public.alembic_version;

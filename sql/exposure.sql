-- On a Leader: what else its database and its server expose (pgsync_dossier/exposure.py).

-- On a Leader: tables of this database outside the dossier schema and the pgsync catalog.
-- name: foreign_tables
SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgsync')
   AND n.nspname !~ '^pg_(toast|temp)'
   AND pg_catalog.format('%%s.%%s', n.nspname, c.relname) <> ALL (%(dossier)s)
 ORDER BY 1;

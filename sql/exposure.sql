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

-- Whether prepare-upgrade left the slot SQL functions open to PUBLIC (setup revokes them).
-- name: slot_functions_open
SELECT pg_catalog.has_function_privilege('public', 'pg_catalog.pg_drop_replication_slot(name)', 'EXECUTE') AS open;

-- pg_hba.conf's rules in the order the server reads them (the first column: rule_number from
-- 16, line_number on 15).
-- name: hba_rules
SELECT * FROM pg_catalog.pg_hba_file_rules WHERE error IS NULL ORDER BY 1;

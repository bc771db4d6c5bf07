-- `setup`'s own statements (pgsync_dossier.node): what preflight reads of the server.
-- Loaded with pgsync_dossier.pg.query(name, "node.sql").

-- name: is_superuser
SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;

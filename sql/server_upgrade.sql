-- `prepare-upgrade` (pgsync_dossier/server_upgrade.py), before pg_upgrade of a node's server.
-- Loaded with pgsync_dossier.pg.query(name, "server_upgrade.sql").

-- On a Leader: pg_upgrade restores the old cluster's privileges on pg_catalog objects and fails
-- on a slot function whose signature changed; `setup` revokes them again afterwards.
-- name: open_slot_functions
SELECT pgsync.set_slot_functions_public(true);

-- On a Subscriber: the password files of its Leader logins, which pg_upgrade does not copy.
-- name: leader_passfiles
SELECT f FROM pg_catalog.pg_ls_dir(pg_catalog.current_setting('data_directory')) AS f
 WHERE f LIKE 'pgsync\_%%.pgpass' ORDER BY f;

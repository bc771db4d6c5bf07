-- Server probes and advisory locks (pgsync_dossier/pg.py), on either side.

-- name: setting
SELECT pg_catalog.current_setting(%(name)s) AS value;

-- The key pairs come from pg.lock_key, the one registry of lock kinds.
-- name: try_advisory_lock
SELECT pg_catalog.pg_try_advisory_lock(%(kind)s, %(ident)s) AS locked;

-- name: advisory_lock
SELECT pg_catalog.pg_advisory_lock(%(kind)s, %(ident)s);

-- name: advisory_unlock
SELECT pg_catalog.pg_advisory_unlock(%(kind)s, %(ident)s);

-- name: advisory_xact_lock
SELECT pg_catalog.pg_advisory_xact_lock(%(kind)s, %(ident)s);

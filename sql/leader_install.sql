-- The Leader's install (pgsync_dossier.leader_install, run by `setup` on a Leader): its logins,
-- the replica identities its publications need, and what status and /metrics read there.
-- Loaded with pgsync_dossier.pg.query(name, "leader_install.sql"); {role} is a quoted identifier.
-- The SQL API itself is sql/leader_api.sql, installed as one script.

-- name: role_exists
SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %(role)s;

-- name: role_create
CREATE ROLE {role} NOLOGIN;

-- The enrollment login: its password is sent as a SCRAM verifier (a literal: DDL takes no
-- parameter), never in clear, so statement logs cannot hold it.
-- name: enroll_role_set
ALTER ROLE {role} LOGIN NOREPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {verifier};

-- The Subscribers' group role: REPLICATION is never inherited, each login has its own.
-- name: subscriber_role_set
ALTER ROLE {role} NOLOGIN NOREPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;

-- name: role_disable
ALTER ROLE {role} NOLOGIN NOREPLICATION;

-- name: terminate_sessions_of
SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = %(role)s;

-- name: drop_owned_by
DROP OWNED BY {role};

-- name: drop_role
DROP ROLE {role};

-- A row of a list is identified by (id, list) on both sides, as the row filters need.
-- name: replica_identities
ALTER TABLE public.dossier REPLICA IDENTITY USING INDEX dossier_id_dossier_list_id_key;
ALTER TABLE public.dossier_face REPLICA IDENTITY USING INDEX dossier_face_id_dossier_list_id_key;
ALTER TABLE pgsync.heartbeat REPLICA IDENTITY DEFAULT;

-- Name and rows of each Leader list named, read on the Leader itself (status there).
-- name: lists_info
SELECT * FROM pgsync.api_lists_info(%(lists)s);

-- On the Leader: each group a Subscriber registered (pgsync.group_registration, which
-- sql/leader_api.sql's functions write) with its slot (status, /metrics, prepare-upgrade).
-- name: registered_groups
SELECT r.name, r.subscriber_node, r.lists,
       s.slot_name IS NOT NULL AS slot_exists, coalesce(s.active, false) AS active, s.wal_status,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes,
       r.registered_at,
       -- When the Subscriber last confirmed: its last reply while it streams, else when the
       -- slot went idle (inactive_since: PostgreSQL 17+, read through jsonb so 15 runs this too).
       CASE WHEN s.active THEN (SELECT w.reply_time FROM pg_catalog.pg_stat_replication AS w
                                 WHERE w.pid = s.active_pid)
            ELSE (pg_catalog.to_jsonb(s) ->> 'inactive_since')::timestamptz END AS last_confirmed,
       s.active_pid,
       -- What the slot's walsenders handed to the output plugin since the statistics began.
       st.total_bytes AS decoded_bytes
  FROM pgsync.group_registration AS r
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
  LEFT JOIN pg_catalog.pg_stat_replication_slots AS st ON st.slot_name = r.name
 ORDER BY r.name;

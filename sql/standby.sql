-- On a Leader: its physical standbys and the slots they synchronize (pgsync_dossier/standby.py).

-- The Leader's physical standbys (walsenders that stream no logical slot and are not a
-- standby's slot synchronization worker), each with its physical slot, if it uses one, and
-- whether that slot receives hot-standby feedback.
-- name: physical_standbys
SELECT w.application_name AS name, pg_catalog.host(w.client_addr) AS address, s.slot_name,
       (s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL) AS feedback
  FROM pg_catalog.pg_stat_replication AS w
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.active_pid = w.pid AND s.slot_type = 'physical'
 WHERE w.application_name NOT LIKE '%%slotsync worker'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots AS l
                    WHERE l.active_pid = w.pid AND l.slot_type = 'logical')
 ORDER BY 1, 2;

-- Each slot that synchronized_standby_slots names (PostgreSQL 17+; none before), in its order,
-- with what this server has of it: a logical walsender of a failover slot sends nothing that
-- every one of them has not confirmed, so one missing, logical or idle slot stops every
-- Subscriber stream (standby.py says which). Slot names are [a-z0-9_], written with or without
-- double quotes. pgsync.api_stream_stall (sql/leader_api.sql) reads the same: keep them alike.
-- name: standby_slots
SELECT n.slot_name, s.slot_name IS NOT NULL AS slot_exists, s.slot_type, coalesce(s.active, false) AS active
  FROM pg_catalog.regexp_split_to_table(
           coalesce(pg_catalog.current_setting('synchronized_standby_slots', true), ''), ','
       ) WITH ORDINALITY AS e(item, ord)
 CROSS JOIN LATERAL (SELECT pg_catalog.btrim(pg_catalog.btrim(e.item), '"') AS slot_name) AS n
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = n.slot_name
 WHERE n.slot_name <> ''
 ORDER BY e.ord;

-- Standbys' slot synchronization workers connected to this primary (PostgreSQL 17+): a
-- database session (a client backend on 18.6) named "[cluster_name_]slotsync worker", or named
-- by the standby's primary_conninfo (Patroni sets it), which reads the failover slots.
-- name: slot_sync_workers
SELECT count(*) AS n
  FROM pg_catalog.pg_stat_activity
 WHERE backend_type = 'client backend'
   AND pid <> pg_catalog.pg_backend_pid()  -- this very query holds the text it looks for
   AND (application_name LIKE '%%slotsync worker'
        OR query LIKE '%%FROM pg_catalog.pg_replication_slots WHERE failover and NOT temporary%%');

-- On a Leader: the groups Subscribers registered (pgsync.group_registration, which
-- sql/leader_api.sql's functions write) with their slots, as leader_install.groups reads them.

-- On the Leader: each group a Subscriber registered, with its slot.
-- name: leader_groups
SELECT r.name, r.subscriber_node, r.lists,
       s.slot_name IS NOT NULL AS slot_exists, coalesce(s.active, false) AS active, s.wal_status,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes,
       r.registered_at,
       -- When the Subscriber last confirmed: its last reply while it streams, else when the
       -- slot went idle (inactive_since: PostgreSQL 17+, read through jsonb so 15 runs this too).
       CASE WHEN s.active THEN (SELECT w.reply_time FROM pg_catalog.pg_stat_replication AS w
                                 WHERE w.pid = s.active_pid)
            ELSE (pg_catalog.to_jsonb(s) ->> 'inactive_since')::timestamptz END AS last_confirmed
  FROM pgsync.group_registration AS r
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
 ORDER BY r.name;

-- Named queries, loaded by name with pgsync_dossier.pg.query().

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

-- On a Subscriber. Subscription names are unique per database only: always look in this one.
-- `relations`: none after pg_upgrade from before 17, which does not carry them (groups.ensure_stream).
-- name: subscription
SELECT s.oid, s.subenabled AS enabled, s.subslotname AS slot_name,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription_rel AS r WHERE r.srsubid = s.oid) AS relations
  FROM pg_catalog.pg_subscription AS s
 WHERE s.subname = %(name)s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Whether a subscription's slot is a failover slot (PostgreSQL 17+ only).
-- name: subscription_failover
SELECT s.subfailover AS failover, s.subenabled AS enabled
  FROM pg_catalog.pg_subscription AS s
 WHERE s.subname = %(name)s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Every subscription of this database with its statistics (the confl_* columns: 18 and later).
-- name: subscriptions
SELECT s.subname, s.subenabled AS enabled, t.*
  FROM pg_catalog.pg_subscription AS s
  LEFT JOIN pg_catalog.pg_stat_subscription_stats AS t ON t.subid = s.oid
 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- name: subscription_errors
SELECT t.apply_error_count + t.sync_error_count AS errors
  FROM pg_catalog.pg_stat_subscription_stats AS t
  JOIN pg_catalog.pg_subscription AS s ON s.oid = t.subid
 WHERE s.subname = %(name)s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Workers of a subscription that run now (apply, parallel apply).
-- name: subscription_workers
SELECT count(w.pid) AS n
  FROM pg_catalog.pg_stat_subscription AS w
  JOIN pg_catalog.pg_subscription AS s ON s.oid = w.subid
 WHERE s.subname = %(name)s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Why a subscription's stream may not advance (sync's barrier timeout says it): whether it is
-- enabled, its apply worker (none while disabled, failing, or short of workers), what that
-- worker waits for and who blocks it, and its errors so far. The apply worker is the one
-- without a table (relid) and without a leader (leader_pid, 16+: a parallel apply worker has
-- one; read through jsonb so 15 runs this too).
-- name: subscription_stall
SELECT s.subenabled AS enabled, w.pid AS worker_pid, a.wait_event_type, a.wait_event,
       (SELECT pg_catalog.array_agg(b.pid::text || coalesce(' (' || b.state || ')', '') ORDER BY b.pid)
          FROM pg_catalog.pg_stat_activity AS b
         WHERE b.pid = ANY (pg_catalog.pg_blocking_pids(w.pid))) AS blocked_by,
       coalesce(t.apply_error_count + t.sync_error_count, 0) AS errors
  FROM pg_catalog.pg_subscription AS s
  LEFT JOIN LATERAL (SELECT w.pid FROM pg_catalog.pg_stat_subscription AS w
                      WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL
                        AND (pg_catalog.to_jsonb(w) ->> 'leader_pid') IS NULL
                      LIMIT 1) AS w ON true
  LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = w.pid
  LEFT JOIN pg_catalog.pg_stat_subscription_stats AS t ON t.subid = s.oid
 WHERE s.subname = %(name)s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Stop a disabled subscription's workers now rather than at their next look at the catalog
-- (up to a second on PostgreSQL 15, whose workers are not woken by DISABLE). A worker stopped
-- mid-transaction rolls it back; its origin has not moved, so the stream resumes before it.
-- name: stop_subscription_workers
SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(w.pid)) AS n
  FROM pg_catalog.pg_stat_subscription AS w
  JOIN pg_catalog.pg_subscription AS s ON s.oid = w.subid
 WHERE s.subname = %(name)s AND NOT s.subenabled AND w.pid IS NOT NULL
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

-- Subscriptions of the whole cluster: each needs a worker and a replication origin.
-- name: cluster_subscriptions
SELECT count(*) AS n FROM pg_catalog.pg_subscription;

-- name: heartbeat_seq
SELECT seq FROM pgsync.heartbeat WHERE group_name = %(name)s;

-- name: heartbeats
SELECT group_name, seq, beat_at FROM pgsync.heartbeat;

-- Rows written so far by the copies named (their connections' application_name).
-- name: copy_progress
SELECT a.application_name, sum(p.tuples_processed)::bigint AS rows
  FROM pg_catalog.pg_stat_progress_copy AS p
  JOIN pg_catalog.pg_stat_activity AS a USING (pid)
 WHERE a.application_name = ANY (%(names)s)
 GROUP BY a.application_name;

-- Rows of one list (either side; on the Leader inside the copy's snapshot).
-- name: list_rows
SELECT (SELECT count(*) FROM public.dossier WHERE dossier_list_id = %(list)s) AS dossiers,
       (SELECT count(*) FROM public.dossier_face WHERE dossier_list_id = %(list)s) AS faces;

-- name: list_has_rows
SELECT EXISTS (SELECT 1 FROM public.dossier WHERE dossier_list_id = %(list)s)
    OR EXISTS (SELECT 1 FROM public.dossier_face WHERE dossier_list_id = %(list)s) AS any;

-- name: local_list_exists
SELECT 1 FROM public.dossier_list WHERE id = %(list)s;

-- Lock a local list and touch it: a local insert that checked the guard before this commits
-- waits on the row (the guard takes FOR SHARE) and then sees the link.
-- name: lock_local_list
UPDATE public.dossier_list SET modified_at = now() WHERE id = %(list)s;

-- A detached list's rows, set-based (run in replica mode: no per-row trigger or cascade),
-- but the dossiers in %(keep)s with their faces. Faces by their own list, not their
-- dossier's: one whose dossier went missing (a write that bypassed the foreign keys) would
-- otherwise survive and collide with the next copy. One statement, so one snapshot for both
-- tables: a stream's transaction that commits meanwhile is purged whole or not at all.
-- name: purge_list
WITH faces AS (
    DELETE FROM public.dossier_face
     WHERE dossier_list_id = %(list)s AND dossier_id <> ALL (%(keep)s::uuid[])
)
DELETE FROM public.dossier WHERE dossier_list_id = %(list)s AND id <> ALL (%(keep)s::uuid[]);

-- name: list_dossier_ids
SELECT id FROM public.dossier WHERE dossier_list_id = %(list)s;

-- Content of one list per chunk of ids, both tables (0: dossier, 1: dossier_face): rows and
-- the XOR of their content hashes, each hashed once more, from an index-only scan of
-- (dossier_list_id, id) INCLUDE (content_hash). A content hash is the XOR of its fields'
-- hashes, so the same change on two rows (a bulk UPDATE) changes both by the same bits: XORed
-- as they are, two such rows in one chunk would cancel out. Hashed again, they do not. Both
-- sides run it (the Leader inside the comparison's snapshot); a chunk is the top bits of the
-- id (2^(16-shift) chunks), so a row lands in the same chunk on both sides whatever its list.
-- Each table's chunks come as one bytea of 16-byte records (chunk int4, rows int4, digest
-- int8), in no order, with the table's rows: the client compares records as bytes, without
-- building thousands of Python rows.
-- name: chunk_digests
SELECT t, pg_catalog.string_agg(pg_catalog.int4send(chunk) || pg_catalog.int4send(n::integer)
                                || pg_catalog.int8send(x), ''::bytea) AS digests,
       sum(n)::bigint AS rows
  FROM (SELECT 0 AS t,
               (pg_catalog.get_byte(pg_catalog.uuid_send(id), 0) * 256
                + pg_catalog.get_byte(pg_catalog.uuid_send(id), 1)) >> %(dossier_shift)s AS chunk,
               count(*) AS n, bit_xor(pg_catalog.hashint8extended(content_hash, 7)) AS x
          FROM public.dossier
         WHERE dossier_list_id = %(list)s
         GROUP BY 2
         UNION ALL
        SELECT 1,
               (pg_catalog.get_byte(pg_catalog.uuid_send(id), 0) * 256
                + pg_catalog.get_byte(pg_catalog.uuid_send(id), 1)) >> %(dossier_face_shift)s,
               count(*), bit_xor(pg_catalog.hashint8extended(content_hash, 7))
          FROM public.dossier_face
         WHERE dossier_list_id = %(list)s
         GROUP BY 2) AS chunks
 GROUP BY t;

-- The rows of some id ranges of one list (the chunks that differ), both tables (0, 1 as
-- above): one index range scan per range, a range given as the lowest and highest 16-bit id
-- prefix it covers. Each table's rows come as one bytea of 24-byte records (id, content hash
-- int8), in no order. OFFSET 0 keeps each subquery a per-range scan even where the table has
-- no statistics yet (a replica just copied), which would otherwise invite a join that scans
-- the whole list once per range.
-- name: range_rows
SELECT 0 AS t, pg_catalog.string_agg(pg_catalog.uuid_send(d.id) || pg_catalog.int8send(d.content_hash),
                                     ''::bytea) AS rows
  FROM ROWS FROM (pg_catalog.unnest(%(dossier_lows)s::integer[]),
                  pg_catalog.unnest(%(dossier_highs)s::integer[])) AS r (low, high)
 CROSS JOIN LATERAL (
       SELECT id, content_hash
         FROM public.dossier
        WHERE dossier_list_id = %(list)s
          AND id BETWEEN (pg_catalog.lpad(pg_catalog.to_hex(r.low), 4, '0') || pg_catalog.repeat('0', 28))::uuid
                     AND (pg_catalog.lpad(pg_catalog.to_hex(r.high), 4, '0') || pg_catalog.repeat('f', 28))::uuid
       OFFSET 0) AS d
 UNION ALL
SELECT 1, pg_catalog.string_agg(pg_catalog.uuid_send(f.id) || pg_catalog.int8send(f.content_hash), ''::bytea)
  FROM ROWS FROM (pg_catalog.unnest(%(dossier_face_lows)s::integer[]),
                  pg_catalog.unnest(%(dossier_face_highs)s::integer[])) AS r (low, high)
 CROSS JOIN LATERAL (
       SELECT id, content_hash
         FROM public.dossier_face
        WHERE dossier_list_id = %(list)s
          AND id BETWEEN (pg_catalog.lpad(pg_catalog.to_hex(r.low), 4, '0') || pg_catalog.repeat('0', 28))::uuid
                     AND (pg_catalog.lpad(pg_catalog.to_hex(r.high), 4, '0') || pg_catalog.repeat('f', 28))::uuid
       OFFSET 0) AS f;

-- The rows of these Leader lists written after a WAL position (compare.settle_neighbours),
-- grouped by list; row_version is the Leader's WAL position when the row was written.
-- name: recent_rows
SELECT dossier_list_id, pg_catalog.array_agg(id) AS ids FROM public.{table}
 WHERE dossier_list_id = ANY (%(lists)s) AND row_version > %(since)s
 GROUP BY dossier_list_id;

-- Whether one of a copy's writers waits, directly or through other transactions, on another
-- of its writers (copier._Watch). Only the writers waiting on a lock start the search, so
-- pg_blocking_pids, which briefly locks the lock manager, is not called while none waits.
-- name: copy_blocked_by_itself
WITH RECURSIVE blockers (pid) AS (
    SELECT pg_catalog.unnest(pg_catalog.pg_blocking_pids(a.pid))
      FROM pg_catalog.pg_stat_activity AS a
     WHERE a.pid = ANY (%(writers)s::integer[]) AND a.wait_event_type = 'Lock'
    UNION
    SELECT pg_catalog.unnest(pg_catalog.pg_blocking_pids(b.pid)) FROM blockers AS b
)
SELECT EXISTS (SELECT 1 FROM blockers WHERE pid = ANY (%(writers)s::integer[])) AS blocked;

-- name: delete_rows
DELETE FROM public.{table} WHERE dossier_list_id = %(list)s AND id = ANY (%(ids)s);

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

-- On a Subscriber: its own login on a Leader (the password is in a file, see enrollment.py).
-- name: leader_login
SELECT login FROM pgsync.leader_login WHERE leader_id = %(leader_id)s;

-- name: store_leader_login
INSERT INTO pgsync.leader_login (leader_id, login, leader_url) VALUES (%(leader_id)s, %(login)s, %(url)s)
ON CONFLICT (leader_id) DO UPDATE SET login = EXCLUDED.login, leader_url = EXCLUDED.leader_url, enrolled_at = now();

-- name: leader_token_check
SELECT token_check FROM pgsync.leader_login WHERE leader_id = %(leader_id)s;

-- name: set_leader_token_check
UPDATE pgsync.leader_login SET token_check = %(check)s WHERE leader_id = %(leader_id)s;

-- name: set_leader_login_url
UPDATE pgsync.leader_login SET leader_url = %(url)s WHERE leader_id = %(leader_id)s AND leader_url <> %(url)s;

-- Which Leader a URL names, as far as this Subscriber knows (its groups, its orphan slots,
-- where its login last answered).
-- name: leader_id_for_url
SELECT leader_id FROM pgsync.sync_group WHERE leader_url = %(url)s
UNION ALL
SELECT leader_id FROM pgsync.orphan_slot WHERE leader_url = %(url)s
UNION ALL
SELECT leader_id FROM pgsync.leader_login WHERE leader_url = %(url)s
LIMIT 1;

-- On a Leader: every enrolled Subscriber with its streams (groups) and how many stream now.
-- name: enrolled_subscribers
SELECT l.node_name, l.login, l.state, l.requested_at, l.approved_at, l.revoked_at,
       count(r.name) AS streams, count(s.slot_name) FILTER (WHERE s.active) AS streaming
  FROM pgsync.subscriber_login AS l
  LEFT JOIN pgsync.group_registration AS r ON pg_catalog.starts_with(r.name, 'pgsync_' || l.node_tag || '_g')
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
 GROUP BY l.login
 ORDER BY l.node_name;

-- name: subscriber_by_name
SELECT * FROM pgsync.subscriber_login
 WHERE node_name = %(node)s OR login = %(node)s OR node_tag = %(node)s
 FOR UPDATE;

-- name: set_subscriber_state
UPDATE pgsync.subscriber_login
   SET state = %(state)s,
       approved_at = CASE WHEN %(state)s IN ('active', 'approved') THEN now() ELSE approved_at END,
       revoked_at = CASE WHEN %(state)s = 'revoked' THEN now() ELSE revoked_at END
 WHERE login = %(login)s
RETURNING *;

-- name: streams_of_subscriber
SELECT r.name, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes
  FROM pgsync.group_registration AS r
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
 WHERE pg_catalog.starts_with(r.name, 'pgsync_' || %(tag)s || '_g')
 ORDER BY r.name;

-- On a Leader: tables of this database outside the dossier schema and the pgsync catalog.
-- name: foreign_tables
SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgsync')
   AND n.nspname !~ '^pg_(toast|temp)'
   AND pg_catalog.format('%%s.%%s', n.nspname, c.relname) <> ALL (%(dossier)s)
 ORDER BY 1;

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

-- The (id, content hash) records of these rows of a list, as range_rows packs them: a
-- verification checks again, after another barrier, only the rows that differed (verify.py).
-- name: id_rows
SELECT 0 AS t, pg_catalog.string_agg(pg_catalog.uuid_send(id) || pg_catalog.int8send(content_hash), ''::bytea)
  FROM public.dossier WHERE dossier_list_id = %(list)s AND id = ANY (%(dossier_ids)s::uuid[])
UNION ALL
SELECT 1, pg_catalog.string_agg(pg_catalog.uuid_send(id) || pg_catalog.int8send(content_hash), ''::bytea)
  FROM public.dossier_face WHERE dossier_list_id = %(list)s AND id = ANY (%(dossier_face_ids)s::uuid[]);

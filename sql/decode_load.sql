-- What the Leader writes, since its statistics began (pgsync_dossier/decode_load.py): WAL bytes
-- (pg_stat_wal) and transactions of every database (pg_stat_database), over the seconds since
-- the WAL statistics were reset or the server started, and the logical streams that decode it.
-- name: decode_load
SELECT coalesce(w.stats_reset, pg_catalog.pg_postmaster_start_time()) AS since,
       w.wal_bytes,
       (SELECT pg_catalog.sum(d.xact_commit + d.xact_rollback) FROM pg_catalog.pg_stat_database AS d) AS transactions,
       extract(epoch FROM pg_catalog.now() - coalesce(w.stats_reset, pg_catalog.pg_postmaster_start_time()))
           AS seconds,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots AS s WHERE s.slot_type = 'logical') AS streams
  FROM pg_catalog.pg_stat_wal AS w;

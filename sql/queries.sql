-- Named queries, loaded by name with pgsync_dossier.pg.query().

-- name: leader_published_lists
SELECT p.list_id, l.name AS list_name, p.publication_name,
       (SELECT count(*) FROM public.dossier AS d WHERE d.dossier_list_id = p.list_id) AS dossiers,
       (SELECT count(*) FROM public.dossier_face AS f WHERE f.dossier_list_id = p.list_id) AS faces,
       (SELECT count(*) FROM pgsync.subscriber_link AS s WHERE s.list_id = p.list_id) AS subscribers,
       p.created_at
  FROM pgsync.publication AS p
  JOIN public.dossier_list AS l ON l.id = p.list_id
 ORDER BY p.list_id;

-- name: leader_subscriber_links
SELECT s.list_id, s.subscriber_node, s.subscriber_list_id, s.slot_name,
       r.slot_name IS NOT NULL AS slot_exists, coalesce(r.active, false) AS active, r.wal_status,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.restart_lsn)::bigint AS retained_bytes,
       s.registered_at
  FROM pgsync.subscriber_link AS s
  LEFT JOIN pg_catalog.pg_replication_slots AS r ON r.slot_name = s.slot_name
 ORDER BY s.list_id, s.subscriber_node, s.subscriber_list_id;

-- name: subscriber_links
SELECT k.*, l.name AS local_list_name,
       s.subenabled AS enabled, s.oid IS NOT NULL AS subscription_exists,
       (SELECT count(*) FROM public.dossier AS d WHERE d.dossier_list_id = k.local_list_id) AS dossiers,
       (SELECT count(*) FROM public.dossier_face AS f WHERE f.dossier_list_id = k.local_list_id) AS faces,
       h.seq AS heartbeat_seq, h.beat_at AS heartbeat_at
  FROM pgsync.link AS k
  JOIN public.dossier_list AS l ON l.id = k.local_list_id
  LEFT JOIN pg_catalog.pg_subscription AS s
         ON s.subname = k.subscription_name AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  LEFT JOIN pgsync.heartbeat AS h ON h.list_id = k.local_list_id
 ORDER BY k.local_list_id;

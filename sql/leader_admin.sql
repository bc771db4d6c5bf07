-- On a Leader: the Subscribers that enrolled (pgsync.subscriber_login) and the operator's say
-- over each of them (pgsync_dossier/leader_admin.py). pgsync.api_enroll (sql/leader_api.sql)
-- writes the enrollments themselves.

-- Every enrolled Subscriber with its streams (groups) and how many stream now.
-- name: enrolled_subscribers
SELECT l.node_name, l.login, l.state, l.requested_at, l.approved_at, l.revoked_at,
       count(r.name) AS streams, count(s.slot_name) FILTER (WHERE s.active) AS streaming
  FROM pgsync.subscriber_login AS l
  LEFT JOIN pgsync.group_registration AS r ON pg_catalog.starts_with(r.name, 'pgsync_' || l.node_tag || '_g')
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
 GROUP BY l.login
 ORDER BY l.node_name;

-- name: subscriber_by_name
SELECT node_name, login, node_tag, state, requested_at, approved_at, revoked_at
  FROM pgsync.subscriber_login
 WHERE node_name = %(node)s OR login = %(node)s OR node_tag = %(node)s
 FOR UPDATE;

-- name: set_subscriber_state
UPDATE pgsync.subscriber_login
   SET state = %(state)s,
       approved_at = CASE WHEN %(state)s IN ('active', 'approved') THEN now() ELSE approved_at END,
       revoked_at = CASE WHEN %(state)s = 'revoked' THEN now() ELSE revoked_at END
 WHERE login = %(login)s
RETURNING node_name, login, node_tag, state, requested_at, approved_at, revoked_at;

-- name: streams_of_subscriber
SELECT r.name, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes
  FROM pgsync.group_registration AS r
  LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = r.name
 WHERE pg_catalog.starts_with(r.name, 'pgsync_' || %(tag)s || '_g')
 ORDER BY r.name;

-- A login opened to a Subscriber approved under `enrollment: manual`.
-- name: open_login
ALTER ROLE {login} LOGIN;

-- name: close_login
ALTER ROLE {login} NOLOGIN;

-- Its sessions ended, streams included (after the commit that closed its login).
-- name: end_sessions
SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = %(login)s;

-- name: drop_stream
SELECT pgsync.api_drop_group(%(name)s);

-- A Subscriber's calls to its Leader (pgsync_dossier.leader_client.LeaderClient): the Leader's SQL API
-- (sql/leader_api.sql), over this Subscriber's own login.
-- Loaded with pgsync_dossier.pg.query(name, "leader_client.sql").

-- name: alive
SELECT 1;

-- name: node_facts
SELECT * FROM pgsync.api_node_facts();

-- name: node_versions
SELECT * FROM pgsync.api_node_versions();

-- name: enrollment_state
SELECT pgsync.api_enrollment_state(%(tag)s) AS state;

-- name: enroll
SELECT pgsync.api_enroll(%(tag)s, %(node_name)s, %(verifier)s) AS state;

-- name: lists_info
SELECT * FROM pgsync.api_lists_info(%(lists)s);

-- name: lists
SELECT * FROM pgsync.api_lists();

-- name: list_origins
SELECT * FROM pgsync.api_list_origins(%(lists)s);

-- The Leader's WAL insert position, as row_version counts it.
-- name: wal_position
SELECT (pg_catalog.pg_current_wal_insert_lsn() - '0/0'::pg_catalog.pg_lsn)::bigint AS lsn;

-- name: dossiers_in_lists
SELECT id::text FROM public.dossier WHERE id = ANY (%(ids)s::uuid[]) AND dossier_list_id = ANY (%(lists)s);

-- A Leader without column lists (a version that does not tell its schema revision).
-- name: set_group_lists
SELECT pgsync.api_set_group_lists(%(name)s, %(node_name)s, %(lists)s);

-- name: set_group_lists_columns
SELECT pgsync.api_set_group_lists(%(name)s, %(node_name)s, %(lists)s, %(dossier)s, %(dossier_face)s);

-- name: group_columns
SELECT * FROM pgsync.api_group_columns(%(name)s);

-- name: xid_horizon
SELECT pgsync.api_xid_horizon()::text AS xid;

-- name: xacts_ended_before
SELECT pgsync.api_xacts_ended_before(%(horizon)s::xid8) AS ended;

-- name: drop_group
SELECT pgsync.api_drop_group(%(name)s);

-- name: drop_stale_slot
SELECT pgsync.api_drop_stale_slot(%(name)s) AS r;

-- name: recreate_slot
SELECT pgsync.api_recreate_slot(%(name)s);

-- name: heartbeat
SELECT pgsync.api_heartbeat(%(name)s) AS seq;

-- name: groups_status
SELECT * FROM pgsync.api_groups_status(%(names)s);

-- name: stream_stall
SELECT * FROM pgsync.api_stream_stall(%(name)s);

-- A copy's reader joins the snapshot another exported (a literal: SET takes no parameter).
-- name: set_transaction_snapshot
SET TRANSACTION SNAPSHOT {snapshot};

-- A reader's first statement takes its snapshot (repeatable read: the transaction keeps it).
-- name: take_snapshot
SELECT 1;

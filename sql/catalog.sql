-- The Subscriber's catalog (schema pgsync): every statement that reads or writes it, by name.
-- Loaded with pgsync_dossier.pg.query(name, "catalog.sql"); only pgsync_dossier.catalog uses them.

-- The revision Alembic recorded here (sql/migrations.sql reads the same for `migrate`).
-- name: schema_revision
SELECT (SELECT version_num FROM public.alembic_version) AS revision
 WHERE pg_catalog.to_regclass('public.alembic_version') IS NOT NULL;

-- name: node
SELECT role, node_name, node_tag, placement, upgrading_from, timeline, face_model, token_verifier,
       sync_schedule, sync_at_startup, sync_at_creation
  FROM pgsync.node;

-- name: groups
SELECT * FROM pgsync.sync_group ORDER BY id;

-- name: group_by_id
SELECT * FROM pgsync.sync_group WHERE id = %(id)s;

-- name: group_by_key
SELECT * FROM pgsync.sync_group
 WHERE leader_id = %(leader_id)s AND schedule IS NOT DISTINCT FROM %(schedule)s;

-- The group's name carries its id, so the id is drawn first.
-- name: insert_group
WITH drawn AS (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('pgsync.sync_group', 'id')) AS id)
INSERT INTO pgsync.sync_group (id, name, leader_id, leader_url, leader_node_name, schedule, leader_schedule)
SELECT drawn.id, 'pgsync_' || %(tag)s || '_g' || drawn.id, %(leader_id)s, %(leader_url)s,
       %(leader_node_name)s, %(schedule)s, %(leader_schedule)s
  FROM drawn
ON CONFLICT (leader_id, schedule) DO NOTHING
RETURNING *;

-- name: delete_group
DELETE FROM pgsync.sync_group WHERE id = %(id)s;

-- name: set_group_leader_facts
UPDATE pgsync.sync_group
   SET leader_schedule = %(leader_schedule)s, leader_node_name = %(leader_node_name)s,
       leader_face_model = %(leader_face_model)s, updated_at = now()
 WHERE id = %(id)s
   AND (leader_schedule, leader_node_name, leader_face_model)
       IS DISTINCT FROM (%(leader_schedule)s, %(leader_node_name)s, %(leader_face_model)s);

-- name: set_fallback_urls
UPDATE pgsync.sync_group SET fallback_urls = %(urls)s, updated_at = now()
 WHERE id = %(id)s AND fallback_urls IS DISTINCT FROM %(urls)s;

-- name: move_group
UPDATE pgsync.sync_group
   SET name = %(name)s, leader_id = %(leader_id)s, leader_url = %(leader_url)s,
       leader_node_name = %(leader_node_name)s, fallback_urls = %(fallbacks)s, leader_available = true,
       leader_unavailable_since = NULL, stopped_at_lsn = NULL, last_error = NULL, updated_at = now()
 WHERE id = %(id)s;

-- name: move_group_links
UPDATE pgsync.link SET leader_id = %(leader_id)s, updated_at = now() WHERE group_id = %(group_id)s;

-- name: set_group_url
UPDATE pgsync.sync_group SET leader_url = %(leader_url)s, updated_at = now()
 WHERE id = %(id)s AND leader_url IS DISTINCT FROM %(leader_url)s;

-- name: set_group_copy_pause
UPDATE pgsync.sync_group
   SET copying_list_id = %(list)s, paused_until = %(until)s, updated_at = now()
 WHERE id = %(id)s;

-- name: set_group_error
UPDATE pgsync.sync_group SET last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s AND last_error IS DISTINCT FROM %(error)s;

-- The Leader's reachability is a fact about the Leader: every group of it changes at once.
-- name: set_leader_available
UPDATE pgsync.sync_group
   SET leader_available = %(available)s,
       leader_unavailable_since = CASE WHEN %(available)s THEN NULL
                                       ELSE coalesce(leader_unavailable_since, now()) END,
       updated_at = now()
 WHERE leader_id = %(leader_id)s AND leader_available IS DISTINCT FROM %(available)s;

-- name: links
SELECT * FROM pgsync.link ORDER BY local_list_id;

-- name: link_for_list
SELECT * FROM pgsync.link WHERE local_list_id = %(list)s;

-- name: link_for_remote
SELECT * FROM pgsync.link WHERE leader_id = %(leader_id)s AND remote_list_id = %(remote)s;

-- name: insert_link
INSERT INTO pgsync.link (local_list_id, remote_list_id, leader_id, group_id, state, origin_id)
VALUES (%(local)s, %(remote)s, %(leader_id)s, %(group_id)s, 'attaching', %(origin_id)s)
RETURNING *;

-- A relay keeps its Leader's list ids, so a Leader list has the same id on every hop.
-- name: link_for_origin
SELECT * FROM pgsync.link
 WHERE coalesce(origin_id, leader_id) = %(origin_id)s AND remote_list_id = %(remote)s;

-- name: delete_link
DELETE FROM pgsync.link WHERE local_list_id = %(list)s;

-- name: set_link_state
UPDATE pgsync.link SET state = %(state)s, last_error = %(error)s, updated_at = now()
 WHERE local_list_id = %(list)s;

-- name: set_group_links_state
UPDATE pgsync.link SET state = %(state)s, last_error = %(error)s, updated_at = now()
 WHERE group_id = %(group_id)s AND state = ANY (%(from_states)s);

-- The earliest of the kept position and this one; NULL clears it.
-- name: keep_settle_since
UPDATE pgsync.link
   SET settle_since = CASE WHEN %(position)s::bigint IS NULL THEN NULL
                           ELSE LEAST(settle_since, %(position)s::bigint) END
 WHERE local_list_id = %(list)s
RETURNING settle_since;

-- name: set_copy_expected
UPDATE pgsync.link SET copy_expected = %(expected)s, updated_at = now() WHERE local_list_id = %(list)s;

-- name: clear_legacy_subscription
UPDATE pgsync.link SET legacy_subscription = NULL, updated_at = now() WHERE local_list_id = %(list)s;

-- name: start_run
INSERT INTO pgsync.sync_run (group_id, reason, window_at) VALUES (%(group_id)s, %(reason)s, %(window_at)s)
RETURNING id, started_at;

-- name: finish_run
UPDATE pgsync.sync_run SET finished_at = now(), ok = %(ok)s, barrier_seq = %(seq)s, error = %(error)s
 WHERE id = %(id)s
RETURNING finished_at;

-- name: forget_run
DELETE FROM pgsync.sync_run WHERE id = %(id)s;

-- Since when a group's schedule occurrences count: the window (or start) of its last
-- successful sync, else its creation.
-- name: last_synced_mark
SELECT greatest(g.created_at, max(coalesce(r.window_at, r.started_at)) FILTER (WHERE r.ok)) AS mark
  FROM pgsync.sync_group AS g LEFT JOIN pgsync.sync_run AS r ON r.group_id = g.id
 WHERE g.id = %(id)s
 GROUP BY g.created_at;

-- name: last_runs
SELECT DISTINCT ON (group_id) group_id, finished_at, ok, error
  FROM pgsync.sync_run WHERE finished_at IS NOT NULL
 ORDER BY group_id, finished_at DESC;

-- name: run_history
SELECT g.id AS group_id,
       extract(epoch FROM max(r.finished_at) FILTER (WHERE r.ok)) AS last_success,
       count(*) FILTER (WHERE NOT r.ok AND r.finished_at > now() - make_interval(days => %(days)s))
           AS failures
  FROM pgsync.sync_group AS g LEFT JOIN pgsync.sync_run AS r ON r.group_id = g.id
 GROUP BY g.id;

-- Old history goes, but never a group's last successful sync: it marks the served window.
-- name: prune_runs
DELETE FROM pgsync.sync_run WHERE finished_at < now() - make_interval(days => %(days)s)
   AND id NOT IN (SELECT max(id) FROM pgsync.sync_run WHERE ok GROUP BY group_id);

-- The latest verification of each list kept by prune_verifications: what status reports.
-- name: prune_verifications
DELETE FROM pgsync.verification AS v
 WHERE v.finished_at < now() - make_interval(days => %(days)s)
   AND v.id <> (SELECT w.id FROM pgsync.verification AS w WHERE w.local_list_id = v.local_list_id
                 ORDER BY w.finished_at DESC LIMIT 1);

-- name: record_verification
INSERT INTO pgsync.verification (local_list_id, remote_list_id, reason, started_at, leader_lsn, equal,
    dossiers_missing, dossiers_extra, dossiers_changed, faces_missing, faces_extra, faces_changed, error)
VALUES (%(local)s, %(remote)s, %(reason)s, %(started_at)s, %(leader_lsn)s, %(equal)s,
    %(dossiers_missing)s, %(dossiers_extra)s, %(dossiers_changed)s,
    %(faces_missing)s, %(faces_extra)s, %(faces_changed)s, %(error)s);

-- Each list's latest verification that compared (one that could not is no proof either way).
-- name: last_verifications
SELECT DISTINCT ON (local_list_id) local_list_id, finished_at, equal, reason,
       dossiers_missing + dossiers_extra + dossiers_changed + faces_missing + faces_extra + faces_changed
           AS differences
  FROM pgsync.verification
 WHERE equal IS NOT NULL
 ORDER BY local_list_id, finished_at DESC;

-- name: prune_lag_samples
DELETE FROM pgsync.lag_sample WHERE sampled_at < pg_catalog.now() - pg_catalog.make_interval(days => %(days)s);

-- name: record_lag_sample
INSERT INTO pgsync.lag_sample (group_id, lag_bytes, lag_seconds)
VALUES (%(group_id)s, %(lag_bytes)s, %(lag_seconds)s);

-- A group's syncs per UTC day of the history, today last; days without any too.
-- name: sync_days
WITH days AS (
    SELECT (pg_catalog.now() AT TIME ZONE 'UTC')::date - back AS day
      FROM pg_catalog.generate_series(%(days)s - 1, 0, -1) AS back
), runs AS (
    SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, ok
      FROM pgsync.sync_run
     WHERE group_id = %(group_id)s
       AND finished_at >= pg_catalog.now() - pg_catalog.make_interval(days => %(days)s)
)
SELECT d.day, count(*) FILTER (WHERE r.ok) AS ok, count(*) FILTER (WHERE NOT r.ok) AS failed
  FROM days AS d LEFT JOIN runs AS r USING (day)
 GROUP BY d.day
 ORDER BY d.day;

-- A group's greatest lag in each UTC hour of the history that has samples.
-- name: lag_hours
SELECT pg_catalog.date_trunc('hour', sampled_at, 'UTC') AS at,
       max(lag_seconds) AS lag_seconds, max(lag_bytes) AS lag_bytes
  FROM pgsync.lag_sample
 WHERE group_id = %(group_id)s
   AND sampled_at >= pg_catalog.now() - pg_catalog.make_interval(days => %(days)s)
 GROUP BY 1
 ORDER BY 1;

-- name: orphans
SELECT * FROM pgsync.orphan_slot ORDER BY detached_at;

-- A name that a live group uses again is no orphan.
-- name: forget_revived_orphans
DELETE FROM pgsync.orphan_slot AS o USING pgsync.sync_group AS g WHERE g.name = o.slot_name;

-- name: record_orphan
INSERT INTO pgsync.orphan_slot (slot_name, leader_url, leader_id) VALUES (%(name)s, %(leader_url)s, %(leader_id)s)
ON CONFLICT (slot_name) DO NOTHING;

-- name: set_orphan_error
UPDATE pgsync.orphan_slot SET last_error = %(error)s WHERE slot_name = %(name)s;

-- name: delete_orphan
DELETE FROM pgsync.orphan_slot WHERE slot_name = %(name)s;

-- Rows of each local list, for status: one grouped count per table for all the lists (as
-- the Leader's api_lists_info). A count per list in a subquery was planned with a generic
-- row estimate, which one large list makes a sequential scan: one per list.
-- name: list_counts
SELECT l.id AS list_id, l.name, coalesce(d.n, 0) AS dossiers, coalesce(f.n, 0) AS faces
  FROM public.dossier_list AS l
  LEFT JOIN (SELECT dossier_list_id, count(*) AS n FROM public.dossier
              WHERE dossier_list_id = ANY (%(lists)s) GROUP BY dossier_list_id) AS d
         ON d.dossier_list_id = l.id
  LEFT JOIN (SELECT dossier_list_id, count(*) AS n FROM public.dossier_face
              WHERE dossier_list_id = ANY (%(lists)s) GROUP BY dossier_list_id) AS f
         ON f.dossier_list_id = l.id
 WHERE l.id = ANY (%(lists)s);

-- This Subscriber's lists for the web page's picker: emptiness by EXISTS, not by counts, so a
-- large list costs one index probe.
-- name: local_lists
SELECT l.id, l.name,
       NOT EXISTS (SELECT FROM public.dossier AS d WHERE d.dossier_list_id = l.id)
       AND NOT EXISTS (SELECT FROM public.dossier_face AS f WHERE f.dossier_list_id = l.id) AS empty,
       k.remote_list_id AS replica_of
  FROM public.dossier_list AS l
  LEFT JOIN pgsync.link AS k ON k.local_list_id = l.id
 ORDER BY l.name, l.id;

-- The group's heartbeat row here: the Leader's updates of it are applied onto this row (it
-- is never copied: it was made before the group's slot).
-- name: ensure_heartbeat
INSERT INTO pgsync.heartbeat (group_name) VALUES (%(name)s) ON CONFLICT (group_name) DO NOTHING;

-- name: delete_heartbeat
DELETE FROM pgsync.heartbeat WHERE group_name = %(name)s;

-- name: set_link_error
UPDATE pgsync.link SET last_error = %(error)s, updated_at = now() WHERE local_list_id = %(list)s;

-- name: set_stopped_at
UPDATE pgsync.sync_group SET stopped_at_lsn = %(lsn)s WHERE id = %(id)s AND stopped_at_lsn IS DISTINCT FROM %(lsn)s;

-- A paused list keeps its pause (and its message) and owes the repair (catalog.py says why).
-- name: set_group_links_repairing
UPDATE pgsync.link
   SET state = CASE WHEN state = 'paused' THEN state ELSE 'repairing' END,
       repair_owed = repair_owed OR state = 'paused',
       last_error = CASE WHEN state = 'paused' THEN last_error ELSE %(note)s END,
       updated_at = now()
 WHERE group_id = %(group_id)s
   AND (state IN ('ready', 'repairing') OR (%(paused_too)s AND state = 'paused'));

-- name: pause_group_links
UPDATE pgsync.link
   SET state = 'paused', last_error = %(message)s, repair_owed = repair_owed OR state = 'repairing',
       updated_at = now()
 WHERE group_id = %(group_id)s AND state IN ('ready', 'paused', 'repairing');

-- name: resume_group_links
UPDATE pgsync.link
   SET state = CASE WHEN repair_owed THEN 'repairing' ELSE 'ready' END,
       last_error = CASE WHEN repair_owed THEN %(note)s END,
       repair_owed = false, updated_at = now()
 WHERE group_id = %(group_id)s AND state = 'paused';

-- name: record_run
INSERT INTO pgsync.sync_run (group_id, reason, finished_at, ok, note) VALUES (%(group_id)s, %(reason)s, now(), %(ok)s, %(note)s);

-- The last heal of each group that finished: when and why (a heal running now has no
-- finished_at yet, and DESC would put it first).
-- name: last_heals
SELECT DISTINCT ON (group_id) group_id, finished_at, note
  FROM pgsync.sync_run WHERE reason = 'heal' AND finished_at IS NOT NULL
 ORDER BY group_id, finished_at DESC;

-- Where this node's database lives: a copy of it elsewhere (restored, cloned, copied as a
-- template) differs in at least one of these.
-- name: placement
SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text
       || '/' || (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())::text
       || '/' || pg_catalog.current_setting('data_directory') AS placement;

-- name: set_placement
UPDATE pgsync.node SET placement = %(placement)s;

-- The WAL timeline this database writes on: a WAL file's name starts with it, in hex. A
-- promotion (or a point-in-time recovery) moves it on at once, where pg_control_checkpoint()
-- waits for the next checkpoint. None on a standby (`status` may read one), which writes none.
-- name: timeline
SELECT CASE WHEN NOT pg_catalog.pg_is_in_recovery()
            THEN pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) END AS walfile;

-- name: set_timeline
UPDATE pgsync.node SET timeline = %(timeline)s WHERE timeline IS DISTINCT FROM %(timeline)s;

-- A promoted standby (placement.py) stays this node, once: of two commands that saw the old
-- timeline, the second waits on the row and then finds nothing to claim.
-- name: claim_promotion
UPDATE pgsync.node SET placement = %(placement)s, timeline = %(timeline)s
 WHERE timeline < %(timeline)s
RETURNING 1 AS claimed;

-- Where this node's database lives, with what pg_upgrade keeps and changes (placement.py).
-- name: upgrade_mark
SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text
       || '/' || (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())::text
       || '/' || pg_catalog.current_setting('data_directory')
       || '|' || (pg_catalog.current_setting('server_version_num')::integer / 10000)::text
       || '|' || pg_catalog.pg_relation_filenode('pgsync.node')::text AS mark;

-- The node moved by pg_upgrade to where it is now: nothing more is expected.
-- name: settle_upgrade
UPDATE pgsync.node SET placement = %(placement)s, upgrading_from = NULL;

-- Before pg_upgrade: a move from here keeps the node's identity (see placement.py).
-- name: mark_upgrading
UPDATE pgsync.node SET upgrading_from = %(mark)s;

-- A Leader's database cloned on its cluster: an identity of its own (placement.leader_cloned).
-- name: new_leader_id
UPDATE pgsync.node
   SET leader_id = (SELECT system_identifier FROM pg_catalog.pg_control_system())::text
                   || '/' || pg_catalog.current_database();

-- A new identity for a copy of a node: a new tag, so new group names (and slots).
-- name: new_node_tag
UPDATE pgsync.node SET node_tag = substr(replace(gen_random_uuid()::text, '-', ''), 1, 12), placement = %(placement)s
RETURNING node_tag;

-- name: rename_group
UPDATE pgsync.sync_group SET name = %(name)s, stopped_at_lsn = NULL, updated_at = now() WHERE id = %(id)s;

-- name: set_run_note
UPDATE pgsync.sync_run SET note = %(note)s WHERE id = %(id)s;

-- `setup` records this node (both roles), or updates it: a changed token or face model is applied.
-- name: record_node
INSERT INTO pgsync.node AS n (role, node_name, face_model, token_verifier,
    sync_schedule, sync_at_startup, sync_at_creation)
VALUES (%(role)s, %(node_name)s, %(face_model)s, %(verifier)s,
    %(schedule)s, %(startup)s, %(creation)s)
ON CONFLICT (id) DO UPDATE SET
    role = EXCLUDED.role,  -- node.setup allows only a Subscriber becoming a relay
    node_name = EXCLUDED.node_name, face_model = EXCLUDED.face_model,
    token_verifier = EXCLUDED.token_verifier,
    sync_schedule = EXCLUDED.sync_schedule,
    sync_at_startup = EXCLUDED.sync_at_startup,
    sync_at_creation = EXCLUDED.sync_at_creation,
    updated_at = now();

-- name: has_groups
SELECT 1 FROM pgsync.sync_group LIMIT 1;

-- On a Leader: how Subscribers enroll (leader_install.install).
-- name: set_enrollment
UPDATE pgsync.node SET enrollment = %(enrollment)s;

-- On a Leader: its identity, recorded once (pg_upgrade gives the cluster a new system
-- identifier, and the Leader must stay the same Leader), and the version that set it up.
-- name: settle_leader_identity
UPDATE pgsync.node SET leader_id = coalesce(leader_id, pgsync.leader_identity()), software_version = %(version)s;

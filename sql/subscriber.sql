-- A Subscriber's side (pgsync_dossier/subscriber.py): its subscriptions and their workers,
-- the heartbeats they apply, the password files they read, and its triggers, which apply the
-- Leader's changes idempotently onto the local lists and keep replica lists read-only for
-- everyone else. `{name}` placeholders are filled with psycopg.sql: a subscription's name as an
-- identifier, and literals where the server takes no parameters (DDL, COPY TO PROGRAM).
--
-- Replication workers run with search_path = '' and session_replication_role = replica
-- (docs/design-notes.md): every name is schema-qualified. The apply triggers are enabled as
-- REPLICA triggers, so they run only in apply workers and in the orchestrator's own
-- replica-mode sessions, which set pgsync.bulk = 'on' to skip them.

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

-- For the rest of the transaction, write as an apply worker does: replica mode, in which
-- foreign keys and ordinary triggers do not fire, with the apply triggers told to stand by.
-- name: write_as_apply
SET LOCAL session_replication_role = replica;
SET LOCAL pgsync.bulk = on;

-- -- the subscription ---------------------------------------------------------------------
-- No initial copy (the orchestrator copies each list itself); {failover} is empty, or the
-- failover option where both servers have failover slots (17+).
-- name: create_subscription
CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {name}
  WITH (slot_name = {slot}, create_slot = {create_slot}, copy_data = false, enabled = {enabled},
        binary = true{failover}{relayed});

-- A relay's walsenders send on only WAL that is flushed; its apply commits asynchronously by
-- default, so each change would wait for the WAL writer (wal_writer_delay, 200 ms) before it
-- went on. A relay's streams flush at each commit.
-- name: flush_each_commit
ALTER SUBSCRIPTION {name} SET (synchronous_commit = 'local');

-- name: node_role
SELECT role FROM pgsync.node;

-- Whether the group's apply worker heard from its upstream within the last seconds given.
-- name: heard_within
SELECT coalesce(pg_catalog.max(last_msg_receipt_time) > pg_catalog.now() - pg_catalog.make_interval(secs => %(seconds)s),
                false) AS heard
  FROM pg_catalog.pg_stat_subscription WHERE subname = %(name)s;

-- name: set_connection
ALTER SUBSCRIPTION {name} CONNECTION {conninfo};

-- name: enable_subscription
ALTER SUBSCRIPTION {name} ENABLE;

-- name: disable_subscription
ALTER SUBSCRIPTION {name} DISABLE;

-- name: set_failover
ALTER SUBSCRIPTION {name} SET (failover = true);

-- A subscription that lets go of its slot (the Leader cannot drop it now).
-- name: release_slot
ALTER SUBSCRIPTION {name} SET (slot_name = NONE);

-- Leader up and a slot still named: its slot on the Leader goes with it.
-- name: drop_subscription
DROP SUBSCRIPTION {name};

-- Creating a subscription waits for the Leader's running transactions: no statement timeout.
-- name: no_statement_timeout
SET statement_timeout = 0;

-- name: reset_statement_timeout
RESET statement_timeout;

-- -- password files ------------------------------------------------------------------------
-- A setting of this transaction only, so a statement trace never holds the password.
-- name: hide_statement
SET LOCAL {setting} = {value};

-- name: set_passfile_line
SELECT pg_catalog.set_config('pgsync.passfile_line', %(line)s, true);

-- The file written by {program} (`umask 077 && cat > path`: mode 0600, which libpq requires).
-- name: write_passfile
COPY (SELECT pg_catalog.current_setting('pgsync.passfile_line')) TO PROGRAM {program}
  WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');

-- name: remove_passfile
COPY (SELECT 1 WHERE false) TO PROGRAM {program};

-- One field, not the record: a record IS NOT NULL only when every field is, and `creation`
-- is NULL on Linux.
-- name: has_passfile
SELECT (pg_catalog.pg_stat_file(%(path)s, true)).modification IS NOT NULL AS present;

-- name: subscription_conninfo
SELECT subconninfo FROM pg_catalog.pg_subscription WHERE oid = %(oid)s;

-- -- triggers (setup installs them, idempotent, in this order) ----------------------------

-- Look up rows by primary key during apply: with the Leader's (id, list) identity the
-- Subscriber's remapped rows are never found and Leader updates are silently lost.
-- name: replica_identity
ALTER TABLE public.dossier REPLICA IDENTITY DEFAULT;
ALTER TABLE public.dossier_face REPLICA IDENTITY DEFAULT;
ALTER TABLE pgsync.heartbeat REPLICA IDENTITY DEFAULT;

-- Version 1's per-subscription remapping.
-- name: drop_retired_functions
DROP TRIGGER IF EXISTS pgsync_remap_list ON public.dossier;
DROP TRIGGER IF EXISTS pgsync_remap_list ON public.dossier_face;
DROP FUNCTION IF EXISTS pgsync.remap_dossier_list_id();
DROP FUNCTION IF EXISTS pgsync.remap_heartbeat_list_id();
DROP FUNCTION IF EXISTS pgsync.replica_target_list(integer);
-- Whole-list md5 digests, replaced by the content hashes (compare.py).
DROP FUNCTION IF EXISTS pgsync.list_digest(integer);

-- The group whose stream the current replication worker applies, or NULL in any other
-- session that writes in replica mode (a data-only restore, say): there the apply trigger
-- leaves rows as they are. A session keeps its answer (a worker serves one subscription for
-- its whole life), cached in a session variable; '0' stands for "not a worker".
-- name: create_applying_group
CREATE OR REPLACE FUNCTION pgsync.applying_group() RETURNS integer
LANGUAGE plpgsql AS
$$
DECLARE
    v_cached text := pg_catalog.current_setting('pgsync.applying_group', true);
    v_subname name;
    v_group integer;
BEGIN
    IF v_cached IS NOT NULL AND v_cached <> '' THEN
        RETURN NULLIF(v_cached::integer, 0);
    END IF;
    SELECT s.subname INTO v_subname FROM pg_catalog.pg_stat_subscription AS s
     WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() LIMIT 1;
    IF NOT FOUND THEN
        PERFORM pg_catalog.set_config('pgsync.applying_group', '0', false);
        RETURN NULL;
    END IF;
    SELECT g.id INTO v_group FROM pgsync.sync_group AS g WHERE g.name OPERATOR(pg_catalog.=) v_subname;
    IF NOT FOUND THEN
        -- Never keep the Leader's list ids: they may be other local lists.
        RAISE EXCEPTION 'pgsync: subscription % replicates dossiers but is no pgsync group', v_subname
            USING HINT = 'run pgsync-dossier setup on this Subscriber';
    END IF;
    PERFORM pg_catalog.set_config('pgsync.applying_group', v_group::text, false);
    RETURN v_group;
END
$$;

-- Apply one change of a dossier or a face:
-- - remap the Leader's list onto the local list of this group; skip rows of lists that the
--   group does not map (detached while the Leader was down, or not yet attached), and delete
--   a row of this group's lists that an UPDATE moves into such a list;
-- - an INSERT of a row that is already here becomes an UPDATE: a replay after the
--   orchestrator's copy, a row moved in from another list, a reload after TRUNCATE;
-- - a row living here in a list of ANOTHER group (two schedules, two streams, each ahead or
--   behind the other) is overwritten only by a newer version of it, and never deleted by
--   this stream; a row in a list no group replicates (a local or detached list: the Leader
--   has moved it out of there) is taken over; a row the other stream deletes while this one
--   waits to take it over is inserted.
-- The queries are written inline, not as helper functions: this runs for every row applied.
-- name: create_apply_change
CREATE OR REPLACE FUNCTION pgsync.apply_change() RETURNS trigger
LANGUAGE plpgsql AS
$$
DECLARE
    v_group integer;
    v_local integer;
    v_current_list integer;
    v_current_version bigint;
BEGIN
    IF pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.>) 1 THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;  -- what this trigger issues below
    END IF;
    v_group := pgsync.applying_group();
    IF v_group IS NULL THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM pgsync.link AS l
                    WHERE l.local_list_id OPERATOR(pg_catalog.=) OLD.dossier_list_id
                      AND l.group_id OPERATOR(pg_catalog.=) v_group) THEN
            RETURN OLD;
        END IF;
        RETURN NULL;
    END IF;
    SELECT l.local_list_id INTO v_local FROM pgsync.link AS l
     WHERE l.group_id OPERATOR(pg_catalog.=) v_group
       AND l.remote_list_id OPERATOR(pg_catalog.=) NEW.dossier_list_id;
    IF v_local IS NULL THEN
        -- Moved on the Leader into a list this group does not map: the list was detached
        -- while the move was on its way (decoded before the filter was narrowed). The row has
        -- left this group's lists; in any other list it is not this stream's to touch.
        IF TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM pgsync.link AS l
                                         WHERE l.local_list_id OPERATOR(pg_catalog.=) OLD.dossier_list_id
                                           AND l.group_id OPERATOR(pg_catalog.=) v_group) THEN
            IF TG_TABLE_NAME = 'dossier' THEN
                DELETE FROM public.dossier WHERE id OPERATOR(pg_catalog.=) OLD.id;
            ELSE
                DELETE FROM public.dossier_face WHERE id OPERATOR(pg_catalog.=) OLD.id;
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    NEW.dossier_list_id := v_local;
    -- Read the row as it is now, decide, and take it over only if it is still as read. For an
    -- UPDATE the apply worker found and locked the row: OLD is what is here. For an INSERT the
    -- other stream may change or delete the row while this waits for its lock (a row moved
    -- between two groups' lists, applied by both at once): then read it again. A row that is
    -- gone is a new row here. (Were it inserted again meanwhile, the INSERT fails and the
    -- apply worker retries the transaction, which then finds it.)
    LOOP
        IF TG_OP = 'UPDATE' THEN
            v_current_list := OLD.dossier_list_id;
            v_current_version := OLD.row_version;
        ELSIF TG_TABLE_NAME = 'dossier' THEN
            SELECT d.dossier_list_id, d.row_version INTO v_current_list, v_current_version
              FROM public.dossier AS d WHERE d.id OPERATOR(pg_catalog.=) NEW.id;
        ELSE
            SELECT f.dossier_list_id, f.row_version INTO v_current_list, v_current_version
              FROM public.dossier_face AS f WHERE f.id OPERATOR(pg_catalog.=) NEW.id;
        END IF;
        IF v_current_list IS NULL THEN
            RETURN NEW;
        END IF;
        IF v_current_list OPERATOR(pg_catalog.<>) v_local
           AND EXISTS (SELECT 1 FROM pgsync.link AS l
                        WHERE l.local_list_id OPERATOR(pg_catalog.=) v_current_list
                          AND l.group_id OPERATOR(pg_catalog.<>) v_group)
           AND NEW.row_version OPERATOR(pg_catalog.<=) v_current_version THEN
            RETURN NULL;  -- another stream already applied a newer state of this row
        END IF;
        IF TG_OP = 'UPDATE' THEN
            RETURN NEW;
        END IF;
        IF TG_TABLE_NAME = 'dossier' THEN
            UPDATE public.dossier
               SET dossier_list_id = NEW.dossier_list_id, name = NEW.name, comment = NEW.comment,
                   active = NEW.active, created_at = NEW.created_at, modified_at = NEW.modified_at,
                   row_version = NEW.row_version
             WHERE id OPERATOR(pg_catalog.=) NEW.id
               AND dossier_list_id OPERATOR(pg_catalog.=) v_current_list
               AND row_version IS NOT DISTINCT FROM v_current_version;
        ELSE
            UPDATE public.dossier_face
               SET dossier_id = NEW.dossier_id, dossier_list_id = NEW.dossier_list_id,
                   embedding = NEW.embedding, model = NEW.model, created_at = NEW.created_at,
                   row_version = NEW.row_version
             WHERE id OPERATOR(pg_catalog.=) NEW.id
               AND dossier_list_id OPERATOR(pg_catalog.=) v_current_list
               AND row_version IS NOT DISTINCT FROM v_current_version;
        END IF;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END LOOP;
END
$$;

-- Local writes to a replica list: INSERT and UPDATE always refused, DELETE only while the
-- Leader is recorded as unavailable (a row of pgsync.sync_group, which only pgsync may change).
-- name: create_guard_replica_list
CREATE OR REPLACE FUNCTION pgsync.guard_replica_list() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_link record;
    v_list integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_list := OLD.dossier_list_id;
    ELSE
        -- Wait for an attach of this list that is in progress, then see its outcome.
        PERFORM 1 FROM public.dossier_list WHERE id = NEW.dossier_list_id FOR SHARE;
        v_list := NEW.dossier_list_id;
    END IF;
    SELECT l.remote_list_id, g.leader_node_name, g.leader_url, g.leader_available INTO v_link
      FROM pgsync.link AS l JOIN pgsync.sync_group AS g ON g.id = l.group_id
     WHERE l.local_list_id = v_list;
    IF NOT FOUND AND TG_OP = 'UPDATE' AND OLD.dossier_list_id <> NEW.dossier_list_id THEN
        v_list := OLD.dossier_list_id;
        SELECT l.remote_list_id, g.leader_node_name, g.leader_url, g.leader_available INTO v_link
          FROM pgsync.link AS l JOIN pgsync.sync_group AS g ON g.id = l.group_id
         WHERE l.local_list_id = v_list;
    END IF;
    IF NOT FOUND THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' AND NOT v_link.leader_available THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'list % is a read-only replica of list % on Leader %',
        v_list, v_link.remote_list_id, COALESCE(v_link.leader_node_name, v_link.leader_url)
        USING ERRCODE = 'insufficient_privilege',
              HINT = CASE WHEN TG_OP = 'DELETE'
                          THEN 'edit it on the Leader; local deletes are allowed only while the Leader is unavailable'
                          ELSE 'edit it on the Leader' END;
END
$$;

-- name: create_guard_replica_truncate
CREATE OR REPLACE FUNCTION pgsync.guard_replica_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    IF EXISTS (SELECT 1 FROM pgsync.link) THEN
        RAISE EXCEPTION 'TRUNCATE of %.% is refused: it would empty replica lists', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'delete the rows of local lists with DELETE, or detach the replica lists first';
    END IF;
    RETURN NULL;
END
$$;

-- The orchestrator's bulk writes (copy, purge) set pgsync.bulk: a per-row function call there
-- would cost more than the copy itself.
-- name: create_triggers
DROP TRIGGER IF EXISTS pgsync_apply ON public.dossier;
CREATE TRIGGER pgsync_apply BEFORE INSERT OR UPDATE OR DELETE ON public.dossier
    FOR EACH ROW WHEN (pg_catalog.current_setting('pgsync.bulk', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgsync.apply_change();
ALTER TABLE public.dossier ENABLE REPLICA TRIGGER pgsync_apply;

DROP TRIGGER IF EXISTS pgsync_apply ON public.dossier_face;
CREATE TRIGGER pgsync_apply BEFORE INSERT OR UPDATE OR DELETE ON public.dossier_face
    FOR EACH ROW WHEN (pg_catalog.current_setting('pgsync.bulk', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgsync.apply_change();
ALTER TABLE public.dossier_face ENABLE REPLICA TRIGGER pgsync_apply;

DROP TRIGGER IF EXISTS pgsync_guard_replica ON public.dossier;
CREATE TRIGGER pgsync_guard_replica BEFORE INSERT OR UPDATE OR DELETE ON public.dossier
    FOR EACH ROW EXECUTE FUNCTION pgsync.guard_replica_list();
DROP TRIGGER IF EXISTS pgsync_guard_replica ON public.dossier_face;
CREATE TRIGGER pgsync_guard_replica BEFORE INSERT OR UPDATE OR DELETE ON public.dossier_face
    FOR EACH ROW EXECUTE FUNCTION pgsync.guard_replica_list();
DROP TRIGGER IF EXISTS pgsync_guard_truncate ON public.dossier;
CREATE TRIGGER pgsync_guard_truncate BEFORE TRUNCATE ON public.dossier
    FOR EACH STATEMENT EXECUTE FUNCTION pgsync.guard_replica_truncate();
DROP TRIGGER IF EXISTS pgsync_guard_truncate ON public.dossier_face;
CREATE TRIGGER pgsync_guard_truncate BEFORE TRUNCATE ON public.dossier_face
    FOR EACH STATEMENT EXECUTE FUNCTION pgsync.guard_replica_truncate();

-- Rows written so far by the copies named (their connections' application_name).
-- name: copy_progress
SELECT a.application_name, sum(p.tuples_processed)::bigint AS rows
  FROM pg_catalog.pg_stat_progress_copy AS p
  JOIN pg_catalog.pg_stat_activity AS a USING (pid)
 WHERE a.application_name = ANY (%(names)s)
 GROUP BY a.application_name;

-- The bytes the rows of these local lists take, both tables: each table's rows of the lists
-- times the stored size of a sample of them (pg_column_size of the whole row, which counts
-- its TOASTed values at their stored size). From the lists' own rows, so the free space a
-- table keeps after a large DELETE does not count: estimated from each table's size per row,
-- lists of about 700 MB read 1,869 MB in tables that had held a purged list of a million
-- (bench/README.md, "a million dossiers"). Read only when a stopped stream's backlog is large
-- (backlog.py).
-- name: lists_bytes
SELECT coalesce(sum(n * coalesce(row_bytes, 0)), 0)::bigint AS bytes
  FROM (SELECT (SELECT count(*) FROM public.dossier WHERE dossier_list_id = ANY (%(lists)s)) AS n,
               (SELECT avg(pg_catalog.pg_column_size(s.*))
                  FROM (SELECT * FROM public.dossier WHERE dossier_list_id = ANY (%(lists)s)
                         LIMIT %(sample)s) AS s) AS row_bytes
        UNION ALL
        SELECT (SELECT count(*) FROM public.dossier_face WHERE dossier_list_id = ANY (%(lists)s)),
               (SELECT avg(pg_catalog.pg_column_size(s.*))
                  FROM (SELECT * FROM public.dossier_face WHERE dossier_list_id = ANY (%(lists)s)
                         LIMIT %(sample)s) AS s)
       ) AS sizes;

-- The planner's statistics of both tables, taken again after a copy wrote a list into them
-- (PostgreSQL's advice after a bulk load: "Populating a Database", run ANALYZE afterwards).
-- Until autovacuum gets to it, statistics that predate the copy say the list is nearly empty,
-- and with them the comparison's range query (compare.sql, range_rows) took the
-- (dossier_list_id, name) index, with the id range as a filter: every chunk range read the
-- whole list (a repair of 1% of a million-row list ran 27 minutes in one query, bench/README.md).
-- name: analyze_tables
ANALYZE public.dossier, public.dossier_face;

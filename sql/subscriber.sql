-- A Subscriber's triggers: apply the Leader's changes idempotently onto the local lists, and
-- keep replica lists read-only for everyone else. `setup` installs them (idempotent).
--
-- Replication workers run with search_path = '' and session_replication_role = replica
-- (docs/design-notes.md): every name is schema-qualified. The apply triggers are enabled as
-- REPLICA triggers, so they run only in apply workers and in the orchestrator's own
-- replica-mode sessions, which set pgsync.bulk = 'on' to skip them.

-- Look up rows by primary key during apply: with the Leader's (id, list) identity the
-- Subscriber's remapped rows are never found and Leader updates are silently lost.
ALTER TABLE public.dossier REPLICA IDENTITY DEFAULT;
ALTER TABLE public.dossier_face REPLICA IDENTITY DEFAULT;
ALTER TABLE pgsync.heartbeat REPLICA IDENTITY DEFAULT;

-- Version 1's per-subscription remapping.
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

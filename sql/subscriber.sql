-- A Subscriber's triggers: remap the Leader's list ids onto local lists during apply, and keep
-- replica lists read-only for everyone else. `setup` installs them (idempotent).
--
-- Replication workers run with search_path = '' and session_replication_role = replica
-- (design.md section 3): every name is schema-qualified, every function pins its search_path.

-- Look up rows by primary key during apply: with the Leader's (id, list) identity the
-- Subscriber's remapped rows are never found and Leader updates are silently lost.
ALTER TABLE public.dossier REPLICA IDENTITY DEFAULT;
ALTER TABLE public.dossier_face REPLICA IDENTITY DEFAULT;
ALTER TABLE pgsync.heartbeat REPLICA IDENTITY DEFAULT;

-- The local list that the current replication worker's Leader list maps onto.
-- Cached in a session variable: a worker serves one subscription for its whole life.
CREATE OR REPLACE FUNCTION pgsync.replica_target_list(p_remote_list_id integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_cached text := pg_catalog.current_setting('pgsync.list_map', true);
    v_subname name;
    v_remote integer;
    v_local integer;
BEGIN
    IF v_cached IS NULL OR v_cached = '' THEN
        SELECT s.subname INTO v_subname FROM pg_catalog.pg_stat_subscription AS s
         WHERE s.pid = pg_catalog.pg_backend_pid() LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;  -- not a replication worker (e.g. a restore in replica mode)
        END IF;
        SELECT l.remote_list_id, l.local_list_id INTO v_remote, v_local
          FROM pgsync.link AS l WHERE l.subscription_name = v_subname;
        IF NOT FOUND THEN
            -- Never keep the Leader's list id: it may be another local list.
            RAISE EXCEPTION 'pgsync: subscription % replicates dossiers but has no pgsync link', v_subname;
        END IF;
        PERFORM pg_catalog.set_config('pgsync.list_map', v_remote || ':' || v_local, false);
    ELSE
        v_remote := pg_catalog.split_part(v_cached, ':', 1)::integer;
        v_local := pg_catalog.split_part(v_cached, ':', 2)::integer;
    END IF;
    IF p_remote_list_id IS DISTINCT FROM v_remote THEN
        -- Never write a row into the wrong list: stop the link instead.
        RAISE EXCEPTION 'pgsync: row of Leader list % arrived on the link of Leader list %',
            p_remote_list_id, v_remote;
    END IF;
    RETURN v_local;
END
$$;

CREATE OR REPLACE FUNCTION pgsync.remap_dossier_list_id() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS
$$
BEGIN
    NEW.dossier_list_id := COALESCE(pgsync.replica_target_list(NEW.dossier_list_id), NEW.dossier_list_id);
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION pgsync.remap_heartbeat_list_id() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS
$$
BEGIN
    NEW.list_id := COALESCE(pgsync.replica_target_list(NEW.list_id), NEW.list_id);
    RETURN NEW;
END
$$;

-- Local writes to a replica list: INSERT and UPDATE always refused, DELETE only while the
-- Leader is recorded as unavailable (a row of pgsync.link, which only pgsync may change).
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
    SELECT l.remote_list_id, l.leader_node_name, l.leader_url, l.leader_available INTO v_link
      FROM pgsync.link AS l WHERE l.local_list_id = v_list;
    IF NOT FOUND AND TG_OP = 'UPDATE' AND OLD.dossier_list_id <> NEW.dossier_list_id THEN
        v_list := OLD.dossier_list_id;
        SELECT l.remote_list_id, l.leader_node_name, l.leader_url, l.leader_available INTO v_link
          FROM pgsync.link AS l WHERE l.local_list_id = v_list;
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

DROP TRIGGER IF EXISTS pgsync_remap_list ON public.dossier;
CREATE TRIGGER pgsync_remap_list BEFORE INSERT OR UPDATE ON public.dossier
    FOR EACH ROW EXECUTE FUNCTION pgsync.remap_dossier_list_id();
ALTER TABLE public.dossier ENABLE REPLICA TRIGGER pgsync_remap_list;

DROP TRIGGER IF EXISTS pgsync_remap_list ON public.dossier_face;
CREATE TRIGGER pgsync_remap_list BEFORE INSERT OR UPDATE ON public.dossier_face
    FOR EACH ROW EXECUTE FUNCTION pgsync.remap_dossier_list_id();
ALTER TABLE public.dossier_face ENABLE REPLICA TRIGGER pgsync_remap_list;

DROP TRIGGER IF EXISTS pgsync_remap_list ON pgsync.heartbeat;
CREATE TRIGGER pgsync_remap_list BEFORE INSERT OR UPDATE ON pgsync.heartbeat
    FOR EACH ROW EXECUTE FUNCTION pgsync.remap_heartbeat_list_id();
ALTER TABLE pgsync.heartbeat ENABLE REPLICA TRIGGER pgsync_remap_list;

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

-- The Leader's API: what a Subscriber may do on the Leader, over its replication login.
--
-- Creating a publication needs ownership of the tables, which the replication login must not
-- have, so these functions run as their owner (SECURITY DEFINER) with a pinned search_path and
-- every name schema-qualified. `setup` installs them (CREATE OR REPLACE: idempotent) and grants
-- EXECUTE to pgsync_replicator only.

CREATE OR REPLACE FUNCTION pgsync.publication_name(p_list_id integer) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS
$$ SELECT 'pgsync_list_' || p_list_id::text $$;

-- Public facts a Subscriber checks before attaching: the token verifier, never the token.
CREATE OR REPLACE FUNCTION pgsync.api_node_facts()
RETURNS TABLE (node_name text, role text, face_model text, token_verifier text,
               sync_schedule text, sync_at_startup boolean, sync_at_creation boolean,
               leader_id text, server_version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT n.node_name, n.role, n.face_model, n.token_verifier, n.sync_schedule,
           n.sync_at_startup, n.sync_at_creation,
           (SELECT c.system_identifier::text FROM pg_catalog.pg_control_system() AS c)
               || '/' || pg_catalog.current_database(),
           pg_catalog.current_setting('server_version_num')::integer
      FROM pgsync.node AS n
$$;

CREATE OR REPLACE FUNCTION pgsync.api_list_info(p_list_id integer)
RETURNS TABLE (id integer, name text, dossiers bigint, faces bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT l.id, l.name,
           (SELECT pg_catalog.count(*) FROM public.dossier AS d WHERE d.dossier_list_id = l.id),
           (SELECT pg_catalog.count(*) FROM public.dossier_face AS f WHERE f.dossier_list_id = l.id)
      FROM public.dossier_list AS l
     WHERE l.id = p_list_id
$$;

-- Publish one list: dossiers, faces and its heartbeat row, row-filtered on the list id.
-- TRUNCATE is not published: row filters do not apply to it (design.md section 2).
CREATE OR REPLACE FUNCTION pgsync.api_publish_list(p_list_id integer) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_name text := pgsync.publication_name(p_list_id);
BEGIN
    PERFORM 1 FROM public.dossier_list WHERE id = p_list_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Leader list % does not exist', p_list_id USING ERRCODE = 'no_data_found';
    END IF;
    -- Serialise concurrent publishers of the same list.
    PERFORM pg_catalog.pg_advisory_xact_lock(1885827940, p_list_id);
    INSERT INTO pgsync.heartbeat (list_id) VALUES (p_list_id) ON CONFLICT (list_id) DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = v_name) THEN
        EXECUTE pg_catalog.format(
            'CREATE PUBLICATION %I FOR TABLE public.dossier WHERE (dossier_list_id = %s), '
            'public.dossier_face WHERE (dossier_list_id = %s), '
            'pgsync.heartbeat WHERE (list_id = %s) '
            'WITH (publish = ''insert, update, delete'')',
            v_name, p_list_id, p_list_id, p_list_id);
    END IF;
    INSERT INTO pgsync.publication (list_id, publication_name) VALUES (p_list_id, v_name)
        ON CONFLICT (list_id) DO NOTHING;
    RETURN v_name;
END
$$;

-- Drop the publication of a list that no Subscriber uses any more.
CREATE OR REPLACE FUNCTION pgsync.api_unpublish_if_unused(p_list_id integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_name text := pgsync.publication_name(p_list_id);
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1885827940, p_list_id);
    IF EXISTS (SELECT 1 FROM pgsync.subscriber_link WHERE list_id = p_list_id) THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('DROP PUBLICATION IF EXISTS %I', v_name);
    DELETE FROM pgsync.publication WHERE list_id = p_list_id;
    DELETE FROM pgsync.heartbeat WHERE list_id = p_list_id;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION pgsync.api_register_subscriber(
    p_list_id integer, p_subscriber_node text, p_subscriber_list_id integer, p_slot_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    IF p_slot_name !~ '^pgsync_[a-z0-9_]+$' THEN
        RAISE EXCEPTION 'invalid slot name %', p_slot_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Publish (again) in this transaction: another Subscriber's unregister may have dropped
    -- the publication since this one asked for it.
    PERFORM pgsync.api_publish_list(p_list_id);
    INSERT INTO pgsync.subscriber_link (slot_name, list_id, subscriber_node, subscriber_list_id)
    VALUES (p_slot_name, p_list_id, p_subscriber_node, p_subscriber_list_id)
    ON CONFLICT (slot_name) DO UPDATE
        SET list_id = EXCLUDED.list_id,
            subscriber_node = EXCLUDED.subscriber_node,
            subscriber_list_id = EXCLUDED.subscriber_list_id;
END
$$;

-- Drop a registered slot (if it exists and nobody streams from it) and its registration.
-- Only slots registered through this API can be dropped through it.
CREATE OR REPLACE FUNCTION pgsync.api_unregister_subscriber(p_slot_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_list_id integer;
    v_active_pid integer;
BEGIN
    SELECT list_id INTO v_list_id FROM pgsync.subscriber_link WHERE slot_name = p_slot_name;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    SELECT active_pid INTO v_active_pid FROM pg_catalog.pg_replication_slots
     WHERE slot_name = p_slot_name;
    IF v_active_pid IS NOT NULL THEN
        PERFORM pg_catalog.pg_terminate_backend(v_active_pid, 5000);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = p_slot_name) THEN
        PERFORM pg_catalog.pg_drop_replication_slot(p_slot_name);
    END IF;
    DELETE FROM pgsync.subscriber_link WHERE slot_name = p_slot_name;
    PERFORM pgsync.api_unpublish_if_unused(v_list_id);
    RETURN 'dropped';
END
$$;

-- Drop a registered slot that exists but is not streaming, so CREATE SUBSCRIPTION can make it
-- again (left behind when an attach was killed between creating the slot and committing).
CREATE OR REPLACE FUNCTION pgsync.api_drop_stale_slot(p_slot_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsync.subscriber_link WHERE slot_name = p_slot_name) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots
                WHERE slot_name = p_slot_name AND active_pid IS NULL) THEN
        PERFORM pg_catalog.pg_drop_replication_slot(p_slot_name);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Advance a list's heartbeat: a Subscriber that has seen this seq has seen everything the
-- Leader committed before it (the sync barrier).
CREATE OR REPLACE FUNCTION pgsync.api_heartbeat(p_list_id integer) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$
    UPDATE pgsync.heartbeat SET seq = seq + 1, beat_at = pg_catalog.clock_timestamp()
     WHERE list_id = p_list_id
    RETURNING seq
$$;

CREATE OR REPLACE FUNCTION pgsync.api_list_heartbeat(p_list_id integer)
RETURNS TABLE (seq bigint, beat_at timestamptz, leader_now timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT h.seq, h.beat_at, pg_catalog.clock_timestamp() FROM pgsync.heartbeat AS h
     WHERE h.list_id = p_list_id
$$;

-- What the Leader keeps for one link: the slot's state, its lag and the WAL it retains.
CREATE OR REPLACE FUNCTION pgsync.api_slot_status(p_slot_name text)
RETURNS TABLE (slot_exists boolean, active boolean, wal_status text, safe_wal_size bigint,
               retained_bytes bigint, lag_bytes bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT true, s.active, s.wal_status, s.safe_wal_size,
           pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint,
           pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint
      FROM pg_catalog.pg_replication_slots AS s
     WHERE s.slot_name = p_slot_name
    UNION ALL
    SELECT false, false, NULL, NULL, NULL, NULL
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = p_slot_name)
$$;

CREATE OR REPLACE FUNCTION pgsync.api_list_digest(p_list_id integer)
RETURNS TABLE (dossiers bigint, faces bigint, digest text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT * FROM pgsync.list_digest(p_list_id) $$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = 'pgsync'::regnamespace AND p.proname LIKE 'api\_%'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgsync_replicator', f);
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA pgsync TO pgsync_replicator;
-- The initial copy of a subscription reads the published tables as the replication login.
GRANT SELECT ON public.dossier, public.dossier_face, pgsync.heartbeat TO pgsync_replicator;

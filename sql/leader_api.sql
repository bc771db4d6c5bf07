-- The Leader's API: what a Subscriber may do on the Leader, over its own login.
--
-- Creating or altering a publication needs ownership of the tables, which a Subscriber's login
-- must not have, so these functions run as their owner (SECURITY DEFINER) with a pinned
-- search_path and every name schema-qualified. `setup` installs them (CREATE OR REPLACE:
-- idempotent).
--
-- Logins (least privilege):
-- - pgsync_enroll: its password is derived from the sync token; no REPLICATION. It may read
--   the Leader's public facts, its lists' ids and names (api_lists) and enroll a Subscriber
--   (api_enroll), nothing else.
-- - pgsync_s_<node tag>_<Leader>: one per Subscriber, made by api_enroll, member of pgsync_subscriber
--   (REPLICATION, SELECT on the dossier tables, EXECUTE on the group API). Every group
--   function acts only on the caller's own groups, whose names carry its node tag.
--
-- One Subscriber stream is a *group*: one publication and one slot, both named after the
-- group, whose row filter names every list the group replicates (docs/design-notes.md,
-- "Version 2"; docs/architecture.md, "How it works").

-- Who this Leader is for its Subscribers (their login names and groups hang on it). `setup`
-- records it once (leader_install.install): pg_upgrade gives the cluster a new system identifier,
-- and the Leader must stay the same Leader. Internal, for the API functions; not for PUBLIC.
CREATE OR REPLACE FUNCTION pgsync.leader_identity() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$$
    SELECT coalesce((SELECT n.leader_id FROM pgsync.node AS n),
                    (SELECT c.system_identifier::text FROM pg_catalog.pg_control_system() AS c)
                        || '/' || pg_catalog.current_database())
$$;
REVOKE ALL ON FUNCTION pgsync.leader_identity() FROM PUBLIC;

-- Version 1's per-list API, replaced by the group functions below.
DROP FUNCTION IF EXISTS pgsync.api_publish_list(integer);
DROP FUNCTION IF EXISTS pgsync.api_unpublish_if_unused(integer);
DROP FUNCTION IF EXISTS pgsync.api_register_subscriber(integer, text, integer, text);
DROP FUNCTION IF EXISTS pgsync.api_unregister_subscriber(text);
DROP FUNCTION IF EXISTS pgsync.api_heartbeat(integer);
DROP FUNCTION IF EXISTS pgsync.api_list_heartbeat(integer);
DROP FUNCTION IF EXISTS pgsync.api_slot_status(text);
DROP FUNCTION IF EXISTS pgsync.api_list_info(integer);
DROP FUNCTION IF EXISTS pgsync.publication_name(integer);
-- Whole-list md5 digests, replaced by the content hashes (compare.py).
DROP FUNCTION IF EXISTS pgsync.api_list_digest(integer);
DROP FUNCTION IF EXISTS pgsync.list_digest(integer);

-- Group names are made by Subscribers: 'pgsync_<node tag>_g<id>'. Checked before any DDL.
CREATE OR REPLACE FUNCTION pgsync.check_group_name(p_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS
$$
BEGIN
    IF p_name IS NULL OR p_name !~ '^pgsync_[a-z0-9_]+$' OR pg_catalog.length(p_name) > 63 THEN
        RAISE EXCEPTION 'invalid group name %', p_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Whether the session's login may act on a group: a superuser may act on any; a Subscriber's
-- login only on its own (named 'pgsync_<its node tag>_g<id>', or a version-1 slot registered
-- under its node name). session_user, not current_user: inside a SECURITY DEFINER function
-- current_user is the owner.
CREATE OR REPLACE FUNCTION pgsync.may_access_group(p_name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$$
    SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user), false)
        OR EXISTS (SELECT 1 FROM pgsync.subscriber_login AS l
                    WHERE l.login = session_user AND l.state = 'active'
                      AND (pg_catalog.starts_with(p_name, 'pgsync_' || l.node_tag || '_g')
                           OR EXISTS (SELECT 1 FROM pgsync.subscriber_link AS v
                                       WHERE v.slot_name = p_name AND v.subscriber_node = l.node_name)))
$$;
REVOKE ALL ON FUNCTION pgsync.may_access_group(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgsync.check_group_access(p_name text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS
$$
BEGIN
    PERFORM pgsync.check_group_name(p_name);
    IF NOT pgsync.may_access_group(p_name) THEN
        RAISE EXCEPTION 'group % does not belong to this Subscriber', p_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgsync.check_group_access(text) FROM PUBLIC;

-- A Subscriber's own login (pgsync_s_<tag>_<Leader>), created or, once an operator allowed it
-- (`approve`), given a new password. The Subscriber sends a SCRAM verifier of a password it
-- drew itself: the password never leaves it. Under `enrollment: manual` a new login waits
-- (NOLOGIN) for `pgsync-dossier approve NODE`. An active login is never taken over through
-- this function (whoever holds the token could otherwise become another Subscriber).
CREATE OR REPLACE FUNCTION pgsync.api_enroll(p_tag text, p_node_name text, p_verifier text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_login text;
    v_state text;
    v_new_state text;
BEGIN
    IF p_tag IS NULL OR p_tag !~ '^[a-z0-9]{6,32}$' THEN
        RAISE EXCEPTION 'invalid node tag' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Roles belong to the cluster, enrollments to this database: a Subscriber of two Leader
    -- databases on one cluster has a login for each (leader_client.own_login_name computes the same).
    v_login := 'pgsync_s_' || p_tag || '_' || pg_catalog.substr(pg_catalog.encode(pg_catalog.sha256(
        pg_catalog.convert_to(pgsync.leader_identity(), 'UTF8')), 'hex'), 1, 8);
    IF p_node_name IS NULL OR p_node_name = '' OR pg_catalog.length(p_node_name) > 200
       OR p_node_name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid node name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_verifier IS NULL OR p_verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
        RAISE EXCEPTION 'a SCRAM-SHA-256 verifier is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885827942, 0);  -- lock: leader_enrollment
    IF EXISTS (SELECT 1 FROM pgsync.subscriber_login
                WHERE node_name = p_node_name AND node_tag <> p_tag AND state <> 'revoked') THEN
        RAISE EXCEPTION 'node name "%" is already enrolled by another Subscriber', p_node_name
            USING ERRCODE = 'unique_violation',
                  HINT = 'give this Subscriber another node_name';
    END IF;
    SELECT state INTO v_state FROM pgsync.subscriber_login WHERE node_tag = p_tag;
    IF v_state = 'active' THEN
        RAISE EXCEPTION 'this Subscriber is enrolled already'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'if it lost its login, run pgsync-dossier revoke and approve for it on the Leader';
    ELSIF v_state = 'revoked' THEN
        RAISE EXCEPTION 'this Subscriber was revoked on the Leader'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pgsync-dossier approve NODE on the Leader lets it enroll again';
    END IF;
    v_new_state := CASE
        WHEN v_state = 'approved' THEN 'active'
        WHEN v_state = 'pending' THEN 'pending'
        WHEN (SELECT n.enrollment FROM pgsync.node AS n) = 'manual' THEN 'pending'
        ELSE 'active' END;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_login) THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN REPLICATION IN ROLE pgsync_subscriber', v_login);
    END IF;
    EXECUTE pg_catalog.format('ALTER ROLE %I %s REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE '
                              'NOBYPASSRLS PASSWORD %L',
                              v_login, CASE v_new_state WHEN 'active' THEN 'LOGIN' ELSE 'NOLOGIN' END,
                              p_verifier);
    INSERT INTO pgsync.subscriber_login AS l (login, node_tag, node_name, state, approved_at)
    VALUES (v_login, p_tag, p_node_name, v_new_state,
            CASE v_new_state WHEN 'active' THEN pg_catalog.now() END)
    ON CONFLICT (node_tag) DO UPDATE
        SET node_name = EXCLUDED.node_name, state = EXCLUDED.state,
            approved_at = coalesce(EXCLUDED.approved_at, l.approved_at), requested_at = pg_catalog.now();
    RETURN v_new_state;
END
$$;

-- Where this Subscriber's enrollment stands: NULL (unknown), pending, active, approved, revoked.
CREATE OR REPLACE FUNCTION pgsync.api_enrollment_state(p_tag text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT state FROM pgsync.subscriber_login WHERE node_tag = p_tag $$;

-- Public facts a Subscriber checks before attaching: the token verifier, never the token.
CREATE OR REPLACE FUNCTION pgsync.api_node_facts()
RETURNS TABLE (node_name text, role text, face_model text, token_verifier text,
               sync_schedule text, sync_at_startup boolean, sync_at_creation boolean,
               leader_id text, server_version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    -- A relay whose Leader now uses another model than its own says the Leader's: so its
    -- downstream Subscribers pause (or refuse to attach) as its own streams did.
    SELECT n.node_name, n.role,
           coalesce((SELECT g.leader_face_model FROM pgsync.sync_group AS g
                      WHERE n.role = 'relay' AND g.leader_face_model <> n.face_model
                      ORDER BY g.id LIMIT 1), n.face_model),
           n.token_verifier, n.sync_schedule,
           n.sync_at_startup, n.sync_at_creation, pgsync.leader_identity(),
           pg_catalog.current_setting('server_version_num')::integer
      FROM pgsync.node AS n
$$;

-- Which schema revision and pgsync-dossier version the Leader runs: a Subscriber compares them
-- with its own before it streams (schema_skew.py). A function of its own, so that a Subscriber
-- of an older version, which reads api_node_facts by its columns, never sees a new one.
CREATE OR REPLACE FUNCTION pgsync.api_node_versions()
RETURNS TABLE (schema_revision text, software_version text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT (SELECT v.version_num FROM public.alembic_version AS v), n.software_version FROM pgsync.node AS n
$$;

-- The named lists that exist, with their row counts: one call for every list of a status.
-- Whether this node publishes the list: a Leader any of its lists, a relay only those it
-- replicates under their Leader's ids (docs/design-notes.md, "Relays"): a list of its own
-- would carry versions of another WAL than its Leader's, and a remapped one cannot be here.
CREATE OR REPLACE FUNCTION pgsync.may_publish(p_list integer) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$$
    SELECT coalesce((SELECT n.role FROM pgsync.node AS n), 'leader') <> 'relay'
        OR EXISTS (SELECT 1 FROM pgsync.link AS k WHERE k.local_list_id = p_list AND k.remote_list_id = p_list)
$$;
REVOKE ALL ON FUNCTION pgsync.may_publish(integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgsync.api_lists_info(p_lists integer[])
RETURNS TABLE (id integer, name text, dossiers bigint, faces bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT l.id, l.name, coalesce(d.n, 0), coalesce(f.n, 0)
      FROM public.dossier_list AS l
      LEFT JOIN (SELECT dossier_list_id, pg_catalog.count(*) AS n FROM public.dossier
                  WHERE dossier_list_id = ANY (p_lists) GROUP BY dossier_list_id) AS d
             ON d.dossier_list_id = l.id
      LEFT JOIN (SELECT dossier_list_id, pg_catalog.count(*) AS n FROM public.dossier_face
                  WHERE dossier_list_id = ANY (p_lists) GROUP BY dossier_list_id) AS f
             ON f.dossier_list_id = l.id
     WHERE l.id = ANY (p_lists) AND pgsync.may_publish(l.id)
     ORDER BY l.id
$$;

-- The Leader each list comes from (its identity): this node on a Leader; on a relay, the one
-- its replica comes from, through any relays before it. Lists it does not publish are absent.
CREATE OR REPLACE FUNCTION pgsync.api_list_origins(p_lists integer[])
RETURNS TABLE (id integer, origin text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT l, CASE WHEN coalesce((SELECT n.role FROM pgsync.node AS n), 'leader') <> 'relay'
                   THEN pgsync.leader_identity()
                   ELSE (SELECT coalesce(k.origin_id, k.leader_id) FROM pgsync.link AS k
                          WHERE k.local_list_id = l) END
      FROM pg_catalog.unnest(p_lists) AS l
     WHERE pgsync.may_publish(l)
$$;

-- Every list a Subscriber may attach, by name (the Subscriber's web page offers them): no
-- counts, so a large Leader answers at once. The enrollment login may call it too: whoever
-- holds the sync token may enroll and read the same.
CREATE OR REPLACE FUNCTION pgsync.api_lists()
RETURNS TABLE (id integer, name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT l.id, l.name FROM public.dossier_list AS l WHERE pgsync.may_publish(l.id) ORDER BY l.name, l.id
$$;

-- Make a group's publication filter on exactly these lists (creating it, its heartbeat row
-- and its registration when new). What a transaction wrote before this change commits is
-- never published, even if it commits later (docs/design-notes.md, "Version 2"): a copy must
-- first wait for those transactions (api_xid_horizon, api_xacts_ended_before).
-- The columns a group's publication names for one table, in table order; NULL when it names
-- none (a publication made before column lists: every column is published).
CREATE OR REPLACE FUNCTION pgsync.published_columns(p_name text, p_table text) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$$
    SELECT CASE WHEN r.prattrs IS NULL THEN NULL ELSE
               (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs::smallint[])) END
      FROM pg_catalog.pg_publication AS p
      JOIN pg_catalog.pg_publication_rel AS r ON r.prpubid = p.oid
     WHERE p.pubname = p_name AND r.prrelid = pg_catalog.to_regclass('public.' || p_table)
$$;
REVOKE ALL ON FUNCTION pgsync.published_columns(text, text) FROM PUBLIC;

-- The columns this version of pgsync-dossier reads and writes (copier.COLUMNS; a unit test
-- keeps the two equal): every Subscriber of this version or an earlier one has them.
CREATE OR REPLACE FUNCTION pgsync.known_columns(p_table text) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS
$$
    SELECT CASE p_table
        WHEN 'dossier' THEN ARRAY['id', 'dossier_list_id', 'name', 'comment', 'active', 'created_at',
                                  'modified_at', 'row_version']
        WHEN 'dossier_face' THEN ARRAY['id', 'dossier_id', 'dossier_list_id', 'embedding', 'model', 'created_at',
                                       'row_version'] END
$$;

-- A column list for one table: the columns asked for, each a stored column of the table, and
-- always the replica identity (without it PostgreSQL refuses the Leader's own UPDATEs and
-- DELETEs) and row_version (which orders a row's versions on the Subscriber). NULL asks for none.
CREATE OR REPLACE FUNCTION pgsync.column_list(p_table text, p_columns text[]) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS
$$
DECLARE
    v_unknown text;
BEGIN
    IF p_columns IS NULL THEN
        RETURN '';
    END IF;
    SELECT c INTO v_unknown FROM pg_catalog.unnest(p_columns) AS c
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = pg_catalog.to_regclass('public.' || p_table) AND a.attname = c
                          AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '');
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'public.% has no column % to publish', p_table, v_unknown
            USING ERRCODE = 'undefined_column';
    END IF;
    IF NOT (p_columns @> ARRAY['id', 'dossier_list_id', 'row_version']) THEN
        RAISE EXCEPTION 'a column list of public.% must name id, dossier_list_id and row_version', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ' (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ' ORDER BY a.attnum)
                      FROM pg_catalog.unnest(p_columns) AS c
                      JOIN pg_catalog.pg_attribute AS a
                        ON a.attrelid = pg_catalog.to_regclass('public.' || p_table) AND a.attname = c) || ')';
END
$$;
REVOKE ALL ON FUNCTION pgsync.column_list(text, text[]) FROM PUBLIC;

-- Make a group's publication filter on exactly these lists and publish exactly these columns
-- (creating it, its heartbeat row and its registration when new). The columns are those the
-- Subscriber has in common with this Leader (schema_skew.py): a column only the Leader has is
-- never published, so it never stops a stream; NULL columns publish every column (a
-- Subscriber of an older version). What a transaction wrote before this change commits is
-- never published, even if it commits later (docs/design-notes.md, "Version 2"): a copy must
-- first wait for those transactions (api_xid_horizon, api_xacts_ended_before).
DROP FUNCTION IF EXISTS pgsync.api_set_group_lists(text, text, integer[], text[], text[]);
CREATE OR REPLACE FUNCTION pgsync.api_set_group_lists(
    p_name text, p_subscriber_node text, p_lists integer[], p_dossier_columns text[], p_face_columns text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_lists integer[];
    v_filter text;
    v_registered integer[];
    v_tables text;
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    -- A Subscriber registers under its own enrolled name, whatever it passes.
    p_subscriber_node := coalesce(
        (SELECT node_name FROM pgsync.subscriber_login WHERE login = session_user), p_subscriber_node);
    SELECT pg_catalog.array_agg(DISTINCT l ORDER BY l) INTO v_lists
      FROM pg_catalog.unnest(p_lists) AS l WHERE l IS NOT NULL;
    IF v_lists IS NULL THEN
        RAISE EXCEPTION 'a group publishes at least one list' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.unnest(v_lists) AS l WHERE NOT pgsync.may_publish(l)) THEN
        RAISE EXCEPTION 'this relay replicates no list % of its Leader: detach those lists on the Subscriber',
              (SELECT pg_catalog.array_to_string(pg_catalog.array_agg(l), ', ')
                 FROM pg_catalog.unnest(v_lists) AS l WHERE NOT pgsync.may_publish(l))
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Serialise changes of one group.
    PERFORM pg_catalog.pg_advisory_xact_lock(1885827941, pg_catalog.hashtext(p_name));  -- lock: leader_registration
    INSERT INTO pgsync.heartbeat (group_name) VALUES (p_name) ON CONFLICT (group_name) DO NOTHING;
    v_filter := pg_catalog.array_to_string(v_lists, ', ');
    v_tables := pg_catalog.format(
        'public.dossier%s WHERE (dossier_list_id IN (%s)), '
        'public.dossier_face%s WHERE (dossier_list_id IN (%s)), '
        'pgsync.heartbeat WHERE (group_name = %L)',
        pgsync.column_list('dossier', p_dossier_columns), v_filter,
        pgsync.column_list('dossier_face', p_face_columns), v_filter, p_name);
    SELECT r.lists INTO v_registered FROM pgsync.group_registration AS r WHERE r.name = p_name;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = p_name) THEN
        EXECUTE pg_catalog.format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = ''insert, update, delete'')',
                                  p_name, v_tables);
    ELSIF v_registered IS DISTINCT FROM v_lists
       OR pgsync.published_columns(p_name, 'dossier') IS DISTINCT FROM
          (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
            WHERE a.attrelid = 'public.dossier'::regclass AND a.attname = ANY (p_dossier_columns))
       OR pgsync.published_columns(p_name, 'dossier_face') IS DISTINCT FROM
          (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
            WHERE a.attrelid = 'public.dossier_face'::regclass AND a.attname = ANY (p_face_columns)) THEN
        EXECUTE pg_catalog.format('ALTER PUBLICATION %I SET TABLE %s', p_name, v_tables);
    END IF;
    INSERT INTO pgsync.group_registration (name, subscriber_node, lists)
    VALUES (p_name, p_subscriber_node, v_lists)
    ON CONFLICT (name) DO UPDATE
        SET subscriber_node = EXCLUDED.subscriber_node, lists = EXCLUDED.lists,
            updated_at = pg_catalog.now()
        WHERE group_registration.lists IS DISTINCT FROM EXCLUDED.lists
           OR group_registration.subscriber_node IS DISTINCT FROM EXCLUDED.subscriber_node;
END
$$;

-- The same, for a Subscriber of an older version: the columns it has (a column the Leader adds
-- later is not published to it).
DROP FUNCTION IF EXISTS pgsync.api_set_group_lists(text, text, integer[]);
CREATE OR REPLACE FUNCTION pgsync.api_set_group_lists(
    p_name text, p_subscriber_node text, p_lists integer[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT pgsync.api_set_group_lists(p_name, p_subscriber_node, p_lists,
                                      pgsync.known_columns('dossier'), pgsync.known_columns('dossier_face'))
$$;

-- Publications made before column lists publish every column: from now on they name the
-- columns every Subscriber has, so that a column the Leader adds later is never published to
-- one that lacks it. The columns stay the same, so nothing in flight is lost.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT g.name, g.subscriber_node, g.lists FROM pgsync.group_registration AS g
              WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_publication AS p WHERE p.pubname = g.name)
                AND (pgsync.published_columns(g.name, 'dossier') IS NULL
                     OR pgsync.published_columns(g.name, 'dossier_face') IS NULL)
    LOOP
        PERFORM pgsync.api_set_group_lists(r.name, r.subscriber_node, r.lists,
                                           pgsync.known_columns('dossier'), pgsync.known_columns('dossier_face'));
    END LOOP;
END
$$;

-- Which columns a group's publication names, per table (NULL: all of them).
CREATE OR REPLACE FUNCTION pgsync.api_group_columns(p_name text)
RETURNS TABLE (table_name text, columns text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    RETURN QUERY SELECT t, pgsync.published_columns(p_name, t)
                   FROM pg_catalog.unnest(ARRAY['dossier', 'dossier_face']) AS t;
END
$$;

-- A fresh transaction id, called after a filter change has committed: every transaction
-- that may have written before that commit has a smaller xid. (A snapshot's xmax is no such
-- bound: it is the latest completed xid + 1, and a running transaction may have an xid at
-- or above it without being listed.)
CREATE OR REPLACE FUNCTION pgsync.api_xid_horizon() RETURNS xid8
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT pg_catalog.pg_current_xact_id() $$;

-- Whether every transaction with an xid below p_horizon has ended (committed or aborted).
-- The horizon's own transaction has completed, so every xid below it that still runs is
-- listed in a new snapshot and holds its xmin down.
CREATE OR REPLACE FUNCTION pgsync.api_xacts_ended_before(p_horizon xid8) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) >= p_horizon $$;

-- End the stream that holds a group's slot, then drop the slot (nothing to do when it is
-- gone). Internal, for the API functions below, which check the name first; not for PUBLIC.
CREATE OR REPLACE FUNCTION pgsync.drop_group_slot(p_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS
$$
DECLARE
    v_active_pid integer;
BEGIN
    SELECT active_pid INTO v_active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = p_name;
    IF v_active_pid IS NOT NULL THEN
        PERFORM pg_catalog.pg_terminate_backend(v_active_pid, 5000);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = p_name) THEN
        PERFORM pg_catalog.pg_drop_replication_slot(p_name);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgsync.drop_group_slot(text) FROM PUBLIC;

-- Drop a group: its slot (ending the stream that holds it), publication, heartbeat and
-- registration. Also retires a version-1 slot and its per-list publication when unused.
-- Only pgsync-named slots can be dropped through it.
CREATE OR REPLACE FUNCTION pgsync.api_drop_group(p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
DECLARE
    v_legacy_list integer;
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    PERFORM pg_catalog.pg_advisory_xact_lock(1885827941, pg_catalog.hashtext(p_name));  -- lock: leader_registration
    PERFORM pgsync.drop_group_slot(p_name);
    EXECUTE pg_catalog.format('DROP PUBLICATION IF EXISTS %I', p_name);
    DELETE FROM pgsync.heartbeat WHERE group_name = p_name;
    DELETE FROM pgsync.group_registration WHERE name = p_name;
    -- Version 1: one publication per list, shared by every Subscriber of that list.
    DELETE FROM pgsync.subscriber_link WHERE slot_name = p_name RETURNING list_id INTO v_legacy_list;
    IF v_legacy_list IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pgsync.subscriber_link WHERE list_id = v_legacy_list) THEN
        EXECUTE pg_catalog.format('DROP PUBLICATION IF EXISTS %I',
                                  (SELECT publication_name FROM pgsync.publication WHERE list_id = v_legacy_list));
        DELETE FROM pgsync.publication WHERE list_id = v_legacy_list;
    END IF;
    RETURN 'dropped';
END
$$;

-- Drop a group's slot that exists but is not streaming, so CREATE SUBSCRIPTION can make it
-- again (left behind when an attach was killed between creating the slot and committing).
CREATE OR REPLACE FUNCTION pgsync.api_drop_stale_slot(p_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    IF NOT EXISTS (SELECT 1 FROM pgsync.group_registration WHERE name = p_name) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots
                WHERE slot_name = p_name AND active_pid IS NULL) THEN
        PERFORM pg_catalog.pg_drop_replication_slot(p_name);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- A group's slot again, after it was lost (max_slot_wal_keep_size) or went missing (a Leader
-- failover that did not keep it): the lost one is dropped first. The Subscriber then repairs
-- the group's lists in place, since the changes in between never reached it.
CREATE OR REPLACE FUNCTION pgsync.api_recreate_slot(p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    IF NOT EXISTS (SELECT 1 FROM pgsync.group_registration WHERE name = p_name) THEN
        RAISE EXCEPTION 'no group % is registered on this Leader', p_name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM pgsync.drop_group_slot(p_name);
    IF pg_catalog.current_setting('server_version_num')::integer >= 170000 THEN
        -- A failover slot, as CREATE SUBSCRIPTION makes it: a standby that synchronizes slots keeps it.
        PERFORM pg_catalog.pg_create_logical_replication_slot(p_name, 'pgoutput', false, false, true);
    ELSE
        PERFORM pg_catalog.pg_create_logical_replication_slot(p_name, 'pgoutput');
    END IF;
    RETURN p_name;
END
$$;

-- The Leader's time up to which this node holds every change of a group's lists: on a Leader,
-- now. On a relay, the oldest Leader time among the heartbeats it has applied for the groups
-- that bring it those lists (each holds everything its Leader committed before it): so a
-- heartbeat's time means the same at every hop. It stays `p_before` (it does not move) while
-- any of those lists is not ready here (a copy or repair owed) or its group has applied no
-- Leader heartbeat yet (seq 0: a row this node made, stamped with its own clock).
CREATE OR REPLACE FUNCTION pgsync.leader_time(p_name text, p_before timestamptz) RETURNS timestamptz
LANGUAGE sql SET search_path = pg_catalog AS
$$
    WITH lists AS (
        SELECT h.beat_at, k.state = 'ready' AND h.seq > 0 AS known
          FROM pgsync.group_registration AS r
         CROSS JOIN pg_catalog.unnest(r.lists) AS l
          LEFT JOIN pgsync.link AS k ON k.local_list_id = l
          LEFT JOIN pgsync.sync_group AS g ON g.id = k.group_id
          LEFT JOIN pgsync.heartbeat AS h ON h.group_name = g.name
         WHERE r.name = p_name)
    SELECT CASE WHEN coalesce((SELECT n.role FROM pgsync.node AS n), 'leader') <> 'relay'
                THEN pg_catalog.clock_timestamp()
                WHEN EXISTS (SELECT 1 FROM lists WHERE NOT coalesce(known, false)) THEN p_before
                ELSE coalesce((SELECT pg_catalog.min(beat_at) FROM lists), p_before) END
$$;
REVOKE ALL ON FUNCTION pgsync.leader_time(text, timestamptz) FROM PUBLIC;

-- Advance a group's heartbeat: a Subscriber that has applied this seq has applied everything
-- the Leader committed before it, for every list of the group (the sync barrier), and so
-- everything the Leader committed before its beat_at (through a relay too: leader_time).
CREATE OR REPLACE FUNCTION pgsync.api_heartbeat(p_name text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$
    UPDATE pgsync.heartbeat SET seq = seq + 1, beat_at = pgsync.leader_time(p_name, beat_at)
     WHERE group_name = p_name AND pgsync.may_access_group(p_name)
    RETURNING seq
$$;

-- What the Leader keeps for each named group: its registration, its slot (state, lag, WAL
-- retained) and its newest heartbeat. One call serves every group of a Subscriber.
DROP FUNCTION IF EXISTS pgsync.api_groups_status(text[]);
CREATE OR REPLACE FUNCTION pgsync.api_groups_status(p_names text[])
RETURNS TABLE (name text, registered boolean, lists integer[], slot_exists boolean, active boolean,
               wal_status text, safe_wal_size bigint, retained_bytes bigint, lag_bytes bigint,
               confirmed_lsn bigint, max_slot_wal_keep_size bigint,
               seq bigint, beat_at timestamptz, leader_now timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
    SELECT g.name, r.name IS NOT NULL, r.lists, s.slot_name IS NOT NULL, coalesce(s.active, false),
           s.wal_status, s.safe_wal_size,
           pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint,
           pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
           pg_catalog.pg_wal_lsn_diff(s.confirmed_flush_lsn, '0/0')::bigint,
           CASE WHEN pg_catalog.current_setting('max_slot_wal_keep_size') = '-1' THEN -1
                ELSE pg_catalog.pg_size_bytes(pg_catalog.current_setting('max_slot_wal_keep_size')) END,
           h.seq, h.beat_at, pg_catalog.clock_timestamp()
      FROM pg_catalog.unnest(p_names) AS g(name)
      LEFT JOIN pgsync.group_registration AS r ON r.name = g.name
      LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = g.name
      LEFT JOIN pgsync.heartbeat AS h ON h.group_name = g.name
     WHERE pgsync.may_access_group(g.name)
$$;

-- Why a group's stream may not advance, as the Leader sees it (a sync whose barrier timed out
-- says it): what the walsender holding the group's slot waits for (WaitForStandbyConfirmation,
-- PostgreSQL 17+: a standby that synchronized_standby_slots names has not confirmed the WAL yet),
-- and each slot that setting names with what this server has of it, as the query standby_slots
-- of sql/standby.sql reads it for the Leader's own checks (keep the two alike). One row; its
-- wait_event is NULL while no walsender holds the group's slot.
CREATE OR REPLACE FUNCTION pgsync.api_stream_stall(p_name text)
RETURNS TABLE (wait_event_type text, wait_event text, standby_slots jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
$$
#variable_conflict use_column
BEGIN
    PERFORM pgsync.check_group_access(p_name);
    RETURN QUERY
    SELECT a.wait_event_type, a.wait_event,
           (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       -- another Subscriber's group name would tell its node tag: not shown
                       'slot_name', CASE WHEN s.slot_type = 'logical' AND NOT pgsync.may_access_group(n.slot_name)
                                         THEN 'a logical slot of another Subscriber' ELSE n.slot_name END,
                       'slot_exists', s.slot_name IS NOT NULL,
                       'slot_type', s.slot_type, 'active', coalesce(s.active, false)) ORDER BY e.ord), '[]')
              FROM pg_catalog.regexp_split_to_table(
                       coalesce(pg_catalog.current_setting('synchronized_standby_slots', true), ''), ','
                   ) WITH ORDINALITY AS e(item, ord)
             CROSS JOIN LATERAL (SELECT pg_catalog.btrim(pg_catalog.btrim(e.item), '"') AS slot_name) AS n
              LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = n.slot_name
             WHERE n.slot_name <> '')
      FROM (SELECT 1) AS one
      LEFT JOIN pg_catalog.pg_replication_slots AS g ON g.slot_name = p_name
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = g.active_pid;
END
$$;

-- Who may call what: the enrollment login its four functions, Subscriber logins all but enrolling.
DO $$
DECLARE
    f regprocedure;
    v_name text;
BEGIN
    FOR f, v_name IN SELECT p.oid::regprocedure, p.proname FROM pg_catalog.pg_proc AS p
                      WHERE p.pronamespace = 'pgsync'::regnamespace AND p.proname LIKE 'api\_%'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        IF v_name IN ('api_enroll', 'api_enrollment_state', 'api_node_facts', 'api_lists') THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgsync_enroll', f);
        END IF;
        IF v_name NOT IN ('api_enroll', 'api_enrollment_state') THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgsync_subscriber', f);
        END IF;
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA pgsync TO pgsync_enroll, pgsync_subscriber;
-- The orchestrator's copy and compare read the published tables as the Subscriber's login.
GRANT SELECT ON public.dossier, public.dossier_face, pgsync.heartbeat TO pgsync_subscriber;

-- A login with REPLICATION could otherwise create, read, advance or drop any slot of this
-- database through these functions (PUBLIC may call them, and they only check the REPLICATION
-- attribute). The group functions above still can: they run as their owner.
-- `prepare-upgrade` gives them back to PUBLIC before pg_upgrade: its restore of the old
-- cluster's privileges fails on a function whose signature changed (17 added `failover` to
-- pg_create_logical_replication_slot), and the next `setup` takes them away again.
CREATE OR REPLACE FUNCTION pgsync.set_slot_functions_public(p_public boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS
$$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND p.proname IN ('pg_create_logical_replication_slot', 'pg_create_physical_replication_slot',
                                  'pg_drop_replication_slot', 'pg_replication_slot_advance',
                                  'pg_logical_slot_get_changes', 'pg_logical_slot_get_binary_changes',
                                  'pg_logical_slot_peek_changes', 'pg_logical_slot_peek_binary_changes',
                                  'pg_copy_logical_replication_slot', 'pg_copy_physical_replication_slot')
    LOOP
        EXECUTE pg_catalog.format(CASE WHEN p_public THEN 'GRANT EXECUTE ON FUNCTION %s TO PUBLIC'
                                       ELSE 'REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC' END, f);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgsync.set_slot_functions_public(boolean) FROM PUBLIC;
SELECT pgsync.set_slot_functions_public(false);

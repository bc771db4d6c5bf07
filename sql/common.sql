-- SQL installed by `setup` on every node, Leader and Subscriber alike (idempotent).

-- A digest of a list's content that does not depend on list ids, so the Leader's list and
-- its replica can be compared without moving rows (the Subscriber computes the same locally).
CREATE OR REPLACE FUNCTION pgsync.list_digest(p_list_id integer)
RETURNS TABLE (dossiers bigint, faces bigint, digest text)
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$$
    SELECT (SELECT pg_catalog.count(*) FROM public.dossier WHERE dossier_list_id = p_list_id),
           (SELECT pg_catalog.count(*) FROM public.dossier_face WHERE dossier_list_id = p_list_id),
           pg_catalog.md5(
               coalesce((SELECT pg_catalog.string_agg(
                            pg_catalog.concat_ws('|', d.id, d.name, d.comment, d.active,
                                (d.created_at AT TIME ZONE 'UTC')::text,
                                (d.modified_at AT TIME ZONE 'UTC')::text), E'\n' ORDER BY d.id)
                           FROM public.dossier AS d WHERE d.dossier_list_id = p_list_id), '')
               || E'\n--\n' ||
               coalesce((SELECT pg_catalog.string_agg(
                            pg_catalog.concat_ws('|', f.id, f.dossier_id, pg_catalog.md5(f.embedding), f.model,
                                (f.created_at AT TIME ZONE 'UTC')::text), E'\n' ORDER BY f.id)
                           FROM public.dossier_face AS f WHERE f.dossier_list_id = p_list_id), ''))
$$;

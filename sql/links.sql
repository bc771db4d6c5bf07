-- A link's local list on a Subscriber (pgsync_dossier/links.py): its lock and its purge.

-- name: local_list_exists
SELECT 1 FROM public.dossier_list WHERE id = %(list)s;

-- Lock a local list and touch it: a local insert that checked the guard before this commits
-- waits on the row (the guard takes FOR SHARE) and then sees the link.
-- name: lock_local_list
UPDATE public.dossier_list SET modified_at = now() WHERE id = %(list)s;

-- A purge's own statement timeout: none, inside its transaction only (a list of a million
-- dossiers takes longer than a connection's default).
-- name: no_statement_timeout_here
SET LOCAL statement_timeout = 0;

-- A detached list's rows, set-based (run in replica mode: no per-row trigger or cascade),
-- but the dossiers in %(keep)s with their faces. Faces by their own list, not their
-- dossier's: one whose dossier went missing (a write that bypassed the foreign keys) would
-- otherwise survive and collide with the next copy. One statement, so one snapshot for both
-- tables: a stream's transaction that commits meanwhile is purged whole or not at all.
-- name: purge_list
WITH faces AS (
    DELETE FROM public.dossier_face
     WHERE dossier_list_id = %(list)s AND dossier_id <> ALL (%(keep)s::uuid[])
)
DELETE FROM public.dossier WHERE dossier_list_id = %(list)s AND id <> ALL (%(keep)s::uuid[]);

-- name: list_dossier_ids
SELECT id FROM public.dossier WHERE dossier_list_id = %(list)s;

-- The demo's sites (pgsync_dossier/demo.py): their admin role and database, the watch lists
-- it makes on them and the edits it makes on the Leader. The dossier tables are public's.

-- On a new cluster, as its bootstrap superuser. {password}: a literal (DDL takes no parameters).
-- name: create_admin
CREATE ROLE {admin} LOGIN SUPERUSER PASSWORD {password};

-- name: create_database
CREATE DATABASE {database} OWNER {admin};

-- name: insert_list
INSERT INTO public.dossier_list (name) VALUES (%(name)s) RETURNING id;

-- name: counts
SELECT (SELECT count(*) FROM public.dossier) AS d, (SELECT count(*) FROM public.dossier_face) AS f;

-- name: copy_dossiers
COPY public.dossier (id, dossier_list_id, name, comment) FROM STDIN;

-- name: copy_faces
COPY public.dossier_face (id, dossier_id, dossier_list_id, embedding, model) FROM STDIN;

-- The Leader's edits, one of each kind, that the Subscribers' syncs then carry.
-- name: insert_dossier
INSERT INTO public.dossier (dossier_list_id, name, comment) VALUES (%(list)s, 'Δημήτρης Κ.', 'added today')
RETURNING id;

-- name: insert_face
INSERT INTO public.dossier_face (dossier_id, embedding, model) VALUES (%(dossier)s, %(embedding)s, %(model)s);

-- name: update_first_dossier
UPDATE public.dossier SET comment = 'last seen at gate 4'
 WHERE id = (SELECT id FROM public.dossier WHERE dossier_list_id = %(list)s ORDER BY id LIMIT 1)
RETURNING name;

-- name: move_first_dossier
UPDATE public.dossier SET dossier_list_id = %(to)s
 WHERE id = (SELECT id FROM public.dossier WHERE dossier_list_id = %(from)s ORDER BY id LIMIT 1)
RETURNING id, name;

-- name: count_faces
SELECT count(*) AS n FROM public.dossier_face WHERE dossier_id = %(dossier)s;

-- name: delete_last_dossier
DELETE FROM public.dossier
 WHERE id = (SELECT id FROM public.dossier WHERE dossier_list_id = %(list)s ORDER BY id DESC LIMIT 1)
RETURNING name;

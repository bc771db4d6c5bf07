-- On a Subscriber: its own login on each Leader (pgsync.leader_login, pgsync_dossier/enrollment.py).

-- On a Subscriber: its own login on a Leader (the password is in a file, see enrollment.py).
-- name: leader_login
SELECT login FROM pgsync.leader_login WHERE leader_id = %(leader_id)s;

-- name: store_leader_login
INSERT INTO pgsync.leader_login (leader_id, login, leader_url) VALUES (%(leader_id)s, %(login)s, %(url)s)
ON CONFLICT (leader_id) DO UPDATE SET login = EXCLUDED.login, leader_url = EXCLUDED.leader_url, enrolled_at = now();

-- name: leader_token_check
SELECT token_check FROM pgsync.leader_login WHERE leader_id = %(leader_id)s;

-- name: set_leader_token_check
UPDATE pgsync.leader_login SET token_check = %(check)s WHERE leader_id = %(leader_id)s;

-- name: set_leader_login_url
UPDATE pgsync.leader_login SET leader_url = %(url)s WHERE leader_id = %(leader_id)s AND leader_url <> %(url)s;

-- Which Leader a URL names, as far as this Subscriber knows (its groups, its orphan slots,
-- where its login last answered).
-- name: leader_id_for_url
SELECT leader_id FROM pgsync.sync_group WHERE leader_url = %(url)s
UNION ALL
SELECT leader_id FROM pgsync.orphan_slot WHERE leader_url = %(url)s
UNION ALL
SELECT leader_id FROM pgsync.leader_login WHERE leader_url = %(url)s
LIMIT 1;

-- The password file of this node's own login (subscriber.write_passfile wrote it); NULL when
-- it is missing.
-- name: read_passfile
SELECT pg_catalog.pg_read_file(%(path)s, 0, 4096, true) AS line;

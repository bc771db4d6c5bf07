-- The orchestrator's copy of a Leader list into a local list (pgsync_dossier/copier.py):
-- its snapshot, its COPY statements, its stage tables and its progress. `{...}` placeholders
-- are filled with psycopg.sql (identifiers, and the column lists a copy builds).

-- Rows of one list (either side; on the Leader inside the copy's snapshot).
-- name: list_rows
SELECT (SELECT count(*) FROM public.dossier WHERE dossier_list_id = %(list)s) AS dossiers,
       (SELECT count(*) FROM public.dossier_face WHERE dossier_list_id = %(list)s) AS faces;

-- name: list_has_rows
SELECT EXISTS (SELECT 1 FROM public.dossier WHERE dossier_list_id = %(list)s)
    OR EXISTS (SELECT 1 FROM public.dossier_face WHERE dossier_list_id = %(list)s) AS any;

-- Whether one of a copy's writers waits, directly or through other transactions, on another
-- of its writers (copier._Watch). Only the writers waiting on a lock start the search, so
-- pg_blocking_pids, which briefly locks the lock manager, is not called while none waits.
-- name: copy_blocked_by_itself
WITH RECURSIVE blockers (pid) AS (
    SELECT pg_catalog.unnest(pg_catalog.pg_blocking_pids(a.pid))
      FROM pg_catalog.pg_stat_activity AS a
     WHERE a.pid = ANY (%(writers)s::integer[]) AND a.wait_event_type = 'Lock'
    UNION
    SELECT pg_catalog.unnest(pg_catalog.pg_blocking_pids(b.pid)) FROM blockers AS b
)
SELECT EXISTS (SELECT 1 FROM blockers WHERE pid = ANY (%(writers)s::integer[])) AS blocked;

-- The snapshot both readers of a copy share (the first exports it, the second imports it).
-- name: export_snapshot
SELECT pg_catalog.pg_export_snapshot() AS s;


-- Rows the copy's writers (their backend pids) have written so far.
-- name: rows_written
SELECT coalesce(sum(tuples_processed), 0)::bigint AS n
  FROM pg_catalog.pg_stat_progress_copy WHERE pid = ANY (%(pids)s);

-- A Leader list's rows (those of one part: {within}, an id range or true), binary, with the
-- local list id in place of the Leader's among {columns}: no per-row trigger has to rewrite it.
-- name: copy_out
COPY (SELECT {columns} FROM {table} WHERE dossier_list_id = {remote} AND {within}) TO STDOUT (FORMAT binary);

-- Rows of one part of a Leader list, inside the copy's snapshot.
-- name: part_rows
SELECT (SELECT count(*) FROM public.dossier WHERE dossier_list_id = %(list)s AND {within}) AS dossiers,
       (SELECT count(*) FROM public.dossier_face WHERE dossier_list_id = %(list)s AND {within}) AS faces;

-- A part's local rows before a direct copy writes it: rows the stream inserted into the list
-- between parts, which the part's snapshot has too (or no longer has).
-- name: clear_part
DELETE FROM {target} WHERE dossier_list_id = %(local)s AND {within};

-- The same, of these rows only ({ids}: a uuid[] literal), run once per batch of a repair's
-- differences. The list is a sub-select, a value the planner does not know, so that
-- statistics older than the list cannot make it read the whole list for each batch through
-- the (dossier_list_id, name) index, the ids a filter (compare.sql, range_rows).
-- name: copy_out_ids
COPY (SELECT {columns} FROM {table} WHERE dossier_list_id = (SELECT {remote}) AND id = ANY ({ids}::uuid[]))
  TO STDOUT (FORMAT binary);

-- name: copy_in
COPY {target} ({columns}) FROM STDIN (FORMAT binary);

-- The columns copied and nothing else (no NOT NULL of a column only this node has).
-- name: make_stage
CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA;

-- name: analyze_stage
ANALYZE {stage};

-- Insert the staged rows; overwrite a row that is already here unless it is equal, or it
-- lives in a list of another group that applied a newer version of it (apply_change's rule).
-- {values}: the columns but id; {excluded} and {current}: the same, of EXCLUDED and of t.
-- name: upsert
INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {stage}
ON CONFLICT (id) DO UPDATE SET ({values}) = ({excluded})
WHERE ({current}) IS DISTINCT FROM ({excluded})
  AND (t.dossier_list_id = %(local)s
       OR NOT EXISTS (SELECT 1 FROM pgsync.link AS k
                       WHERE k.local_list_id = t.dossier_list_id AND k.group_id <> %(group)s)
       OR EXCLUDED.row_version > t.row_version);

-- The list's local rows that the Leader list does not have (at the copy's snapshot).
-- name: delete_missing
DELETE FROM {target} AS t WHERE t.dossier_list_id = %(local)s AND {within}
   AND NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE s.id = t.id);

-- Comparing a replica list with its Leader list, and repairing it (pgsync_dossier/compare.py).

-- A row's state, as every query below compares it: its content hash (migration 0005) XORed
-- with a hash of its row_version. The version is no content, but a replica must carry the
-- Leader's: the apply trigger orders a row's moves between two groups' lists by it, so a row
-- repaired in content but left at an older version (a face whose dossier moved away and back
-- while a window was closed: same content, newer version) would let the other stream's older
-- move win. Both columns are in the (dossier_list_id, id) index, so this stays index-only.

-- The state of one list per chunk of ids, both tables (0: dossier, 1: dossier_face): rows
-- and the XOR of their states, each hashed once more, from an index-only scan of
-- (dossier_list_id, id) INCLUDE (content_hash, row_version). A content hash is the XOR of its
-- fields' hashes, so the same change on two rows (a bulk UPDATE) changes both by the same
-- bits: XORed as they are, two such rows in one chunk would cancel out. Hashed again, they do
-- not. Both sides run it (the Leader inside the comparison's snapshot); a chunk is the top
-- bits of the id (2^(16-shift) chunks), so a row lands in the same chunk on both sides
-- whatever its list. Each table's chunks come as one bytea of 16-byte records (chunk int4,
-- rows int4, digest int8), in no order, with the table's rows: the client compares records as
-- bytes, without building thousands of Python rows.
-- name: chunk_digests
SELECT t, pg_catalog.string_agg(pg_catalog.int4send(chunk) || pg_catalog.int4send(n::integer)
                                || pg_catalog.int8send(x), ''::bytea) AS digests,
       sum(n)::bigint AS rows
  FROM (SELECT 0 AS t,
               (pg_catalog.get_byte(pg_catalog.uuid_send(id), 0) * 256
                + pg_catalog.get_byte(pg_catalog.uuid_send(id), 1)) >> %(dossier_shift)s AS chunk,
               count(*) AS n,
               bit_xor(pg_catalog.hashint8extended(
                   content_hash # pg_catalog.hashint8extended(row_version, 8), 7)) AS x
          FROM public.dossier
         WHERE dossier_list_id = %(list)s
         GROUP BY 2
         UNION ALL
        SELECT 1,
               (pg_catalog.get_byte(pg_catalog.uuid_send(id), 0) * 256
                + pg_catalog.get_byte(pg_catalog.uuid_send(id), 1)) >> %(dossier_face_shift)s,
               count(*),
               bit_xor(pg_catalog.hashint8extended(
                   content_hash # pg_catalog.hashint8extended(row_version, 8), 7))
          FROM public.dossier_face
         WHERE dossier_list_id = %(list)s
         GROUP BY 2) AS chunks
 GROUP BY t;

-- The rows of some id ranges of one list (the chunks that differ), both tables (0, 1 as
-- above): one index range scan per range, a range given as the lowest and highest 16-bit id
-- prefix it covers. Each table's rows come as one bytea of 24-byte records (id, state
-- int8), in no order. OFFSET 0 keeps each subquery a per-range scan even where the table has
-- no statistics yet (a replica just copied), which would otherwise invite a join that scans
-- the whole list once per range. The list is given as a sub-select, a value the planner does
-- not know: statistics that predate a list (a Leader list bulk-loaded since autovacuum last
-- analyzed, or a replica's before its copy) estimate it at 1 row, and at 1 row the planner
-- is as happy with the (dossier_list_id, name) index and the id range as a filter, which
-- reads the whole list once per range (27 minutes for a repair at a million, bench/README.md).
-- Unknown, the list is estimated at the table's average list, and the (dossier_list_id, id)
-- index, which bounds the scan by the range, wins whatever the statistics say.
-- name: range_rows
SELECT 0 AS t, pg_catalog.string_agg(pg_catalog.uuid_send(d.id) || pg_catalog.int8send(d.state),
                                     ''::bytea) AS rows
  FROM ROWS FROM (pg_catalog.unnest(%(dossier_lows)s::integer[]),
                  pg_catalog.unnest(%(dossier_highs)s::integer[])) AS r (low, high)
 CROSS JOIN LATERAL (
       SELECT id, content_hash # pg_catalog.hashint8extended(row_version, 8) AS state
         FROM public.dossier
        WHERE dossier_list_id = (SELECT %(list)s::integer)
          AND id BETWEEN (pg_catalog.lpad(pg_catalog.to_hex(r.low), 4, '0') || pg_catalog.repeat('0', 28))::uuid
                     AND (pg_catalog.lpad(pg_catalog.to_hex(r.high), 4, '0') || pg_catalog.repeat('f', 28))::uuid
       OFFSET 0) AS d
 UNION ALL
SELECT 1, pg_catalog.string_agg(pg_catalog.uuid_send(f.id) || pg_catalog.int8send(f.state), ''::bytea)
  FROM ROWS FROM (pg_catalog.unnest(%(dossier_face_lows)s::integer[]),
                  pg_catalog.unnest(%(dossier_face_highs)s::integer[])) AS r (low, high)
 CROSS JOIN LATERAL (
       SELECT id, content_hash # pg_catalog.hashint8extended(row_version, 8) AS state
         FROM public.dossier_face
        WHERE dossier_list_id = (SELECT %(list)s::integer)
          AND id BETWEEN (pg_catalog.lpad(pg_catalog.to_hex(r.low), 4, '0') || pg_catalog.repeat('0', 28))::uuid
                     AND (pg_catalog.lpad(pg_catalog.to_hex(r.high), 4, '0') || pg_catalog.repeat('f', 28))::uuid
       OFFSET 0) AS f;

-- The rows of these Leader lists written after a WAL position (compare.settle_neighbours),
-- grouped by list; row_version is the Leader's WAL position when the row was written.
-- name: recent_rows
SELECT dossier_list_id, pg_catalog.array_agg(id) AS ids FROM public.{table}
 WHERE dossier_list_id = ANY (%(lists)s) AND row_version > %(since)s
 GROUP BY dossier_list_id;

-- Run once per batch of differences: the list as a sub-select, as in range_rows.
-- name: delete_rows
DELETE FROM public.{table} WHERE dossier_list_id = (SELECT %(list)s::integer) AND id = ANY (%(ids)s);

-- The (id, state) records of these rows of a list, as range_rows packs them: a
-- verification checks again, after another barrier, only the rows that differed (verify.py).
-- name: id_rows
SELECT 0 AS t, pg_catalog.string_agg(pg_catalog.uuid_send(id)
                                     || pg_catalog.int8send(content_hash # pg_catalog.hashint8extended(row_version, 8)),
                                     ''::bytea)
  FROM public.dossier WHERE dossier_list_id = %(list)s AND id = ANY (%(dossier_ids)s::uuid[])
UNION ALL
SELECT 1, pg_catalog.string_agg(pg_catalog.uuid_send(id)
                                || pg_catalog.int8send(content_hash # pg_catalog.hashint8extended(row_version, 8)),
                                ''::bytea)
  FROM public.dossier_face WHERE dossier_list_id = %(list)s AND id = ANY (%(dossier_face_ids)s::uuid[]);

-- A repair's stage table emptied for the next rows it stages (the table lives until commit).
-- name: empty_stage
TRUNCATE {stage};

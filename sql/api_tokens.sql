-- API tokens, on both roles (pgsync.api_token, pgsync_dossier/api_tokens.py): named tokens for
-- the HTTP API and the web page, kept as SHA-256 hashes.

-- name: api_token_create
INSERT INTO pgsync.api_token (name, token_hash, read_only) VALUES (%(name)s, %(token_hash)s, %(read_only)s)
ON CONFLICT (name) DO NOTHING
RETURNING name, read_only, created_at, last_used_at;

-- name: api_token_revoke
DELETE FROM pgsync.api_token WHERE name = %(name)s;

-- name: api_tokens
SELECT name, read_only, created_at, last_used_at FROM pgsync.api_token ORDER BY name;

-- The token presented to the API, found by its hash. Its last use is written at most once a
-- minute, so a busy API does not write on every request.
-- name: api_token_use
WITH found AS (
    SELECT name, read_only, created_at, last_used_at FROM pgsync.api_token WHERE token_hash = %(token_hash)s
), touched AS (
    UPDATE pgsync.api_token AS t SET last_used_at = now()
      FROM found
     WHERE t.name = found.name
       AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
)
SELECT name, read_only, created_at, last_used_at FROM found;

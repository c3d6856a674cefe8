-- API keys and tokens (issue 13). The secret is never stored: only its
-- SHA-256, which is enough for a random 192-bit secret (no dictionary to
-- attack). key_id is the public handle shown in listings and logs; it is
-- also the secret's first characters after the prefix, so a leaked key can
-- be found here by its prefix.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    -- ingest: send events (public keys for players); read: query API and
    -- realtime hub; admin: catalog writes and key management (includes read).
    scopes          TEXT[] NOT NULL CHECK (cardinality(scopes) > 0
                        AND scopes <@ ARRAY['ingest', 'read', 'admin']::TEXT[]),
    secret_sha256   TEXT NOT NULL UNIQUE,
    -- Web origins a browser may send this key from; empty: any.
    allowed_origins TEXT[] NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS api_keys_name ON api_keys (name);

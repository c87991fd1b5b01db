-- API tokens: who may call the API, for which tenant, with which scopes.
--
-- The secret is never stored: only the SHA-256 of its random part, which the API
-- compares in constant time with that of the token presented, found by its id (the
-- token's public part). Rollout: a new table only; the previous release ignores it.
CREATE TABLE api_tokens (
    id           UUID        PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    name         TEXT,
    -- Space-separated, as OAuth writes scopes: tasks:submit tasks:read tasks:operate admin.
    scopes       TEXT        NOT NULL,
    secret_hash  BYTEA       NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    -- Updated at most once a minute per token, not on every request.
    last_used_at TIMESTAMPTZ
);

CREATE INDEX api_tokens_tenant ON api_tokens (tenant, created_at);

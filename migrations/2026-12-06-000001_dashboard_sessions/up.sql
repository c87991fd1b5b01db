-- Dashboard sessions: a browser's cookie, exchanged for a credential at sign-in.
--
-- Stored server-side so that any API replica can check a session (no sticky sessions)
-- and so that sign-out and token revocation end it at once. Only the SHA-256 of the
-- cookie's value is kept. A session made from an API token ends with it: revoking or
-- expiring the token ends its sessions (the lookup joins the token), deleting it
-- deletes them. Rollout: a new table only; the previous release ignores it.
CREATE TABLE dashboard_sessions (
    id_hash      BYTEA       PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    token_id     UUID        REFERENCES api_tokens (id) ON DELETE CASCADE,
    tenant       TEXT        NOT NULL,
    -- Space-separated, as api_tokens.scopes.
    scopes       TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Idle expiry; updated at most once a minute, not on every request.
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Absolute expiry.
    expires_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_token ON dashboard_sessions (token_id);

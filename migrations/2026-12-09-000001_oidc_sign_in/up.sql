-- Dashboard sign-in with an OpenID Connect provider.
--
-- A sign-in in progress: the authorization request's state (only its SHA-256, the key
-- the callback finds it by), its PKCE verifier and nonce, until it expires (a few
-- minutes). Any API replica may receive the callback; a row is taken once.
-- Rollout: a new table and a nullable column; the previous release ignores both.
CREATE TABLE oidc_sign_ins (
    state_hash    BYTEA       PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    pkce_verifier TEXT        NOT NULL,
    nonce         TEXT        NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);

-- Who a session signed in with the identity provider is (its `sub`), for the audit log.
ALTER TABLE dashboard_sessions ADD COLUMN subject TEXT;

-- The audit log: who did what to which object, from where, and how it ended. Each row
-- is written in the transaction of the action it records (a re-drive that rolls back
-- leaves no success behind); refusals are written on their own.
--
-- Rollout: a new table only; the previous release ignores it.
CREATE TABLE audit_events (
    id             BIGSERIAL   PRIMARY KEY,
    occurred_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- NULL when the action cannot be tied to a tenant: a sign-in with a token that does
    -- not exist. Such rows are for operators (the table, the logs), not for GET /api/audit.
    tenant         TEXT,
    -- token:<id> for an API token and the dashboard sessions made from it, cli for the
    -- token command, anonymous with AUTH_DISABLED, unknown for a credential that was
    -- not recognised.
    actor          TEXT        NOT NULL,
    -- sign_in, token.create, token.revoke, task.redrive
    action         TEXT        NOT NULL,
    -- What the action was on: a task id, a token id.
    target         TEXT,
    outcome        TEXT        NOT NULL,
    request_id     TEXT,
    client_address TEXT,
    CONSTRAINT audit_events_outcome_check CHECK (outcome IN ('success', 'failure'))
);

-- A tenant's events newest first, and the keyset cursor (occurred_at, id) of GET /api/audit.
CREATE INDEX audit_events_tenant_newest_first_idx
    ON audit_events (tenant, occurred_at DESC, id DESC);

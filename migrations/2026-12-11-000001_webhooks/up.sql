-- Completion webhooks. A task may name a callback URL (nullable, no default: a
-- catalogue change). When a transition makes such a task final it adds a delivery to
-- webhook_deliveries in its own transaction, with the body to send, so a crash after
-- the commit loses nothing; the API replicas' delivery loops claim due rows
-- (SKIP LOCKED, then a short claim), send them, and record every attempt.
ALTER TABLE tasks ADD COLUMN callback_url TEXT;

CREATE TABLE webhook_deliveries (
    -- Also the `webhook-id` header (msg_ + the id without dashes), the same on every
    -- attempt.
    id              UUID        PRIMARY KEY,
    -- No foreign key, as for the task outbox: a lookup per insert on the hot path for
    -- rows that live a few seconds.
    task_id         UUID        NOT NULL,
    tenant          TEXT        NOT NULL,
    url             TEXT        NOT NULL,
    payload         JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A sender holds the row until then; past it, another may take it over.
    claimed_until   TIMESTAMPTZ,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    delivered_at    TIMESTAMPTZ,
    gave_up_at      TIMESTAMPTZ,
    CONSTRAINT webhook_deliveries_attempts_check CHECK (attempts >= 0)
);
CREATE INDEX webhook_deliveries_task_idx ON webhook_deliveries (task_id);
-- What the delivery loops look for: only rows still to deliver.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

CREATE TABLE webhook_attempts (
    delivery_id  UUID        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER     NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    duration_ms  BIGINT      NOT NULL,
    -- The receiver's HTTP status, when it answered.
    status_code  INTEGER,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt),
    CONSTRAINT webhook_attempts_attempt_check CHECK (attempt >= 1)
);

-- Bulk operations (POST /api/tasks/bulk/retry, /cancel): one row each, holding its
-- filter, its progress and who works on it, so that any API replica can carry on one
-- that another left (a claim that expires), and a stop is one UPDATE.
--
-- Additive only: the previous release ignores both changes.

-- What an audit event was about beyond its target: a bulk operation's filter and count.
-- Nullable without a default: a catalogue change, no rewrite.
ALTER TABLE audit_events ADD COLUMN details JSONB;

CREATE TABLE bulk_operations (
    id              UUID        PRIMARY KEY,
    tenant          TEXT        NOT NULL,
    action          TEXT        NOT NULL,
    -- The filter as the API read it (statuses spelt out, times in UTC).
    filter          JSONB       NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'RUNNING',
    -- Tasks the filter selected when the operation was made; only tasks up to
    -- last_task (tasks.id) are in scope, so tasks made later are left alone.
    matched         BIGINT      NOT NULL,
    last_task       BIGINT      NOT NULL,
    -- Tasks are taken in tasks.id order; every one up to this one has been handled.
    done_through    BIGINT      NOT NULL DEFAULT 0,
    -- Handled: re-driven or cancelled (acted), or no longer in a status the action
    -- applies to when its turn came (skipped).
    acted           BIGINT      NOT NULL DEFAULT 0,
    skipped         BIGINT      NOT NULL DEFAULT 0,
    rate_per_second INTEGER     NOT NULL,
    actor           TEXT        NOT NULL,
    request_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    -- The replica working on it, until claimed_until; past it, another may take over.
    claimed_by      TEXT,
    claimed_until   TIMESTAMPTZ,
    CONSTRAINT bulk_operations_action_check CHECK (action IN ('retry', 'cancel')),
    CONSTRAINT bulk_operations_state_check CHECK (state IN ('RUNNING', 'COMPLETED', 'CANCELLED')),
    CONSTRAINT bulk_operations_rate_check CHECK (rate_per_second >= 1)
);
-- What the replicas look for: operations still running.
CREATE INDEX bulk_operations_running_idx ON bulk_operations (created_at) WHERE state = 'RUNNING';

-- Tasks accepted by the API and the service requests they are split into.
--
-- Status columns are TEXT with a CHECK constraint rather than a PostgreSQL enum type:
-- the database still enforces the four values, and a later release can widen the set
-- with a constraint swap that the previous release keeps running against.

CREATE TABLE tasks (
    id               BIGSERIAL PRIMARY KEY,
    task_id          UUID         NOT NULL,
    task_name        VARCHAR(255) NOT NULL,
    task_description TEXT,
    status           TEXT         NOT NULL DEFAULT 'PENDING',
    created_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    payload          JSONB        NOT NULL,
    error_message    TEXT,
    -- The client's Idempotency-Key, when one was sent: a retried POST finds its task here.
    idempotency_key  TEXT,
    CONSTRAINT tasks_task_id_key UNIQUE (task_id),
    CONSTRAINT tasks_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT tasks_status_check
        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED')),
    CONSTRAINT tasks_task_name_not_blank CHECK (btrim(task_name) <> ''),
    CONSTRAINT tasks_payload_is_array CHECK (jsonb_typeof(payload) = 'array')
);

-- Listing newest first, and the keyset cursor (created_at, id) that pages through it.
CREATE INDEX tasks_newest_first_idx ON tasks (created_at DESC, id DESC);
-- The same with a status filter; also finds unfinished tasks to resume.
CREATE INDEX tasks_status_newest_first_idx ON tasks (status, created_at DESC, id DESC);

CREATE TABLE service_requests (
    -- Derived from (task_id, item_index, service_name) and sent as the Idempotency-Key.
    id               UUID        PRIMARY KEY,
    task_id          UUID        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    item_index       INTEGER     NOT NULL,
    service_name     TEXT        NOT NULL,
    scenario_id      UUID        NOT NULL,
    business_type_id UUID        NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'PENDING',
    attempts         INTEGER     NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    request_payload  JSONB       NOT NULL,
    response_payload JSONB,
    error_message    TEXT,
    CONSTRAINT service_requests_task_item_service_key UNIQUE (task_id, item_index, service_name),
    CONSTRAINT service_requests_status_check
        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED')),
    CONSTRAINT service_requests_item_index_check CHECK (item_index >= 0),
    CONSTRAINT service_requests_attempts_check CHECK (attempts >= 0)
);

-- History that a re-drive or a retry used to overwrite: the failed attempts of each
-- service request, and each earlier failure of a re-driven task.
--
-- Only failures are written: a service request that succeeds at its first attempt,
-- which is the normal path, adds no row, so the write cost per task is unchanged.
-- Rollout: new tables only; the previous release neither reads nor writes them.

-- One row per failed HTTP attempt. `attempt` counts over all runs of the service
-- request (it matches `service_requests.attempts`), so a re-drive's attempts follow
-- the earlier run's.
CREATE TABLE service_request_attempts (
    service_request_id UUID        NOT NULL REFERENCES service_requests (id) ON DELETE CASCADE,
    attempt            INTEGER     NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    duration_ms        BIGINT      NOT NULL,
    -- The service's HTTP status, when it answered; NULL for a timeout or a transport
    -- error.
    status_code        INTEGER,
    error              TEXT        NOT NULL,
    PRIMARY KEY (service_request_id, attempt),
    CONSTRAINT service_request_attempts_attempt_check CHECK (attempt >= 1),
    CONSTRAINT service_request_attempts_duration_check CHECK (duration_ms >= 0)
);

-- One row per re-drive of a FAILED task: when it had failed, with what error, and when
-- someone re-drove it. The time between the two is not processing time.
CREATE TABLE task_redrives (
    task_id       UUID        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    -- 1 for the first re-drive of the task, 2 for the next, ...
    redrive       INTEGER     NOT NULL,
    failed_at     TIMESTAMPTZ NOT NULL,
    redriven_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    error_message TEXT,
    PRIMARY KEY (task_id, redrive),
    CONSTRAINT task_redrives_redrive_check CHECK (redrive >= 1)
);

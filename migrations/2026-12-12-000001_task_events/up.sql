-- The task event log behind the Server-Sent Events streams (GET /api/tasks/{id}/events,
-- GET /api/events): one row per status change of a task (its creation included) and
-- per service request that reached a final status, written by statement-level triggers
-- so that every writer, this release's and the previous one's, logs every change in
-- the transaction that makes it.
--
-- Order and resuming. An event's position is (tx, seq): the id of the transaction that
-- wrote it, then a sequence within it. A stream reads only events whose transaction is
-- older than the oldest transaction still running (pg_snapshot_xmin): those are settled
-- for good (committed or not), and anything written later sorts after them. A plain
-- sequence would not do: a transaction that drew a smaller number can commit after a
-- reader has passed a larger one, and a client resuming from the larger one would
-- never see it.
--
-- Additive only: the previous release keeps running against this schema and its writes
-- are logged by the same triggers.
CREATE TABLE task_events (
    tx                 BIGINT      NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    seq                BIGINT      GENERATED ALWAYS AS IDENTITY,
    -- No foreign keys: a lookup per row on the hot path for a log that retention will
    -- trim with the tasks it describes.
    task_id            UUID        NOT NULL,
    -- NULL for a change of the task itself.
    service_request_id UUID,
    status             TEXT        NOT NULL,
    previous_status    TEXT,
    error_message      TEXT,
    at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tx, seq)
);
-- A task's stream (and its resumption).
CREATE INDEX task_events_task_idx ON task_events (task_id, tx, seq);

-- Told once per transaction that logged events (PostgreSQL folds identical
-- notifications of one transaction into one), at its commit.
CREATE FUNCTION task_events_log_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_events (task_id, status, error_message)
        SELECT task_id, status, error_message FROM new_tasks;
    ELSE
        -- Updates that leave the status alone (most of them) log nothing.
        INSERT INTO task_events (task_id, status, previous_status, error_message)
        SELECT n.task_id, n.status, o.status, n.error_message
        FROM new_tasks n JOIN old_tasks o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
        ORDER BY n.task_id;
    END IF;
    GET DIAGNOSTICS logged = ROW_COUNT;
    IF logged > 0 THEN
        PERFORM pg_notify('orchestrator_task_events', '');
    END IF;
    RETURN NULL;
END;
$$;

-- A service request's outcome: the update that makes it COMPLETED, FAILED or
-- CANCELLED. Its creation and a re-drive's reopening are not outcomes.
CREATE FUNCTION task_events_log_service_requests() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged BIGINT;
BEGIN
    INSERT INTO task_events (task_id, service_request_id, status, previous_status, error_message)
    SELECT n.task_id, n.id, n.status, o.status, n.error_message
    FROM new_requests n JOIN old_requests o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status
      AND n.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
    ORDER BY n.task_id, n.item_index, n.service_name;
    GET DIAGNOSTICS logged = ROW_COUNT;
    IF logged > 0 THEN
        PERFORM pg_notify('orchestrator_task_events', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_log_inserts AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_events_log_tasks();
CREATE TRIGGER tasks_log_updates AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_events_log_tasks();
CREATE TRIGGER service_requests_log_updates AFTER UPDATE ON service_requests
    REFERENCING OLD TABLE AS old_requests NEW TABLE AS new_requests
    FOR EACH STATEMENT EXECUTE FUNCTION task_events_log_service_requests();

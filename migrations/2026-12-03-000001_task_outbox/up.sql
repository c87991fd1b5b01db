-- The Kafka-mode outbox moves out of `tasks` into a table of its own.
--
-- Until now a task was unpublished while its `enqueued_at` was NULL, and the API's mark
-- writer set it once the broker acknowledged the record. That mark was a non-HOT update
-- of a `tasks` row (a new entry in each of its indexes, the trigram GIN among them) and
-- fired the status-count trigger, for every accepted task. Here a row is inserted in the
-- transaction that inserts the task, and the mark deletes it: writes to a small table
-- with one index.
--
-- Rollout: the previous release keeps running against this schema. Its API still
-- writes and reads `enqueued_at`, so the column stays (this release no longer writes
-- it; a later migration may drop it). Its sweeper sees every task the new release accepts
-- as unpublished (`enqueued_at` NULL) and publishes it once more if it is still
-- PENDING after the grace period; that is harmless, since workers process a task any
-- number of times to the same result. (Its query still finds an index without
-- tasks_unenqueued_idx: tasks_status_newest_first_idx.)

-- No foreign key to tasks: it would add a lookup of the task row (a referential
-- integrity trigger) to every accepted task, and one to every delete of a task. The
-- outbox does not need it: the sweeper drops rows whose task is gone or no longer
-- PENDING (outbox::drop_settled).
CREATE TABLE task_outbox (
    task_id    UUID        PRIMARY KEY,
    -- The task's created_at: the sweeper takes rows older than its grace period.
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tasks stored but not yet marked published stay in the outbox.
INSERT INTO task_outbox (task_id, created_at)
SELECT task_id, created_at FROM tasks WHERE enqueued_at IS NULL AND status = 'PENDING';

DROP INDEX tasks_unenqueued_idx;

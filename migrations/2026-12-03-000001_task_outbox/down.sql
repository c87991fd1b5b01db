-- Tasks that left the outbox were published: give them the mark the previous release
-- reads, so its sweeper does not publish every one of them again.
UPDATE tasks SET enqueued_at = COALESCE(enqueued_at, updated_at)
WHERE task_id NOT IN (SELECT task_id FROM task_outbox) AND enqueued_at IS NULL;
CREATE INDEX tasks_unenqueued_idx ON tasks (created_at)
    WHERE enqueued_at IS NULL AND status = 'PENDING';
DROP TABLE task_outbox;

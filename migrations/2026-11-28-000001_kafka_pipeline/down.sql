DROP TABLE partition_leases;
DROP TABLE consumer_members;
DROP INDEX tasks_unenqueued_idx;
ALTER TABLE tasks DROP COLUMN enqueued_at;

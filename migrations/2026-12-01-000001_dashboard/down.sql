DROP INDEX IF EXISTS tasks_finished_at_idx;
-- pg_trgm stays: other objects of the database may use it.
DROP TRIGGER IF EXISTS tasks_count_truncates ON tasks;
DROP TRIGGER IF EXISTS tasks_count_deletes ON tasks;
DROP TRIGGER IF EXISTS tasks_count_updates ON tasks;
DROP TRIGGER IF EXISTS tasks_count_inserts ON tasks;
DROP FUNCTION IF EXISTS task_status_counts_reset();
DROP FUNCTION IF EXISTS task_status_counts_record();
DROP FUNCTION IF EXISTS task_status_counts_fold();
DROP TABLE IF EXISTS task_status_counts;

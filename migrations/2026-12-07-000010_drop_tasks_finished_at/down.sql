CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_finished_at_idx ON tasks (updated_at) INCLUDE (status) WHERE status IN ('COMPLETED', 'FAILED');

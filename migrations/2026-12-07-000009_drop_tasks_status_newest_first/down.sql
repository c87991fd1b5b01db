CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_status_newest_first_idx ON tasks (status, created_at DESC, id DESC);

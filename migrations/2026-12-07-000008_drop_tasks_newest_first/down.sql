CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_newest_first_idx ON tasks (created_at DESC, id DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_task_name_trgm_idx
    ON tasks USING gin (task_name gin_trgm_ops);

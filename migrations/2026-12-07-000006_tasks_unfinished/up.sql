-- Unfinished tasks of every tenant, oldest first: what inline mode resumes at start.
-- Partial, so a task leaves it when it finishes and most tasks are never in it; it
-- takes over this use from tasks_status_newest_first_idx, dropped below. Built
-- CONCURRENTLY, see tasks_tenant_newest_first_idx.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_unfinished_idx
    ON tasks (created_at, id) WHERE status IN ('PENDING', 'IN_PROGRESS');

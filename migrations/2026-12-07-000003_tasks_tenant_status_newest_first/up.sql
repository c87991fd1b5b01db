-- The same with a status filter. Built CONCURRENTLY, see tasks_tenant_newest_first_idx.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_status_newest_first_idx
    ON tasks (tenant, status, created_at DESC, id DESC);

-- Tasks a tenant finished per minute (throughput), as tasks_finished_at_idx did for
-- all tasks. Built CONCURRENTLY, see tasks_tenant_newest_first_idx.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_finished_at_idx
    ON tasks (tenant, updated_at) INCLUDE (status)
    WHERE status IN ('COMPLETED', 'FAILED');

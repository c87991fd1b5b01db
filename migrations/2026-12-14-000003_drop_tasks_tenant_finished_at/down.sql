CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_finished_at_idx
    ON tasks (tenant, updated_at) INCLUDE (status)
    WHERE status IN ('COMPLETED', 'FAILED');

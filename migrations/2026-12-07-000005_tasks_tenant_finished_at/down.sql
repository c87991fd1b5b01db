DROP INDEX CONCURRENTLY IF EXISTS tasks_tenant_finished_at_idx;

DROP INDEX CONCURRENTLY IF EXISTS tasks_tenant_ended_at_idx;

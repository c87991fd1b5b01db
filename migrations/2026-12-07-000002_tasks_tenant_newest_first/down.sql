DROP INDEX CONCURRENTLY IF EXISTS tasks_tenant_newest_first_idx;

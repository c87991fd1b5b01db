-- Replaced by tasks_tenant_finished_at_idx. Dropped CONCURRENTLY.
DROP INDEX CONCURRENTLY IF EXISTS tasks_finished_at_idx;

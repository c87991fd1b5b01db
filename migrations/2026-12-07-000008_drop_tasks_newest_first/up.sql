-- Replaced by tasks_tenant_newest_first_idx: every read of the list is per tenant.
-- Dropped CONCURRENTLY, so reads and writes of tasks never wait for it.
DROP INDEX CONCURRENTLY IF EXISTS tasks_newest_first_idx;

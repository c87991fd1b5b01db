-- Replaced by tasks_tenant_status_newest_first_idx (lists) and tasks_unfinished_idx
-- (resuming). Dropped CONCURRENTLY.
DROP INDEX CONCURRENTLY IF EXISTS tasks_status_newest_first_idx;

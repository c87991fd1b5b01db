-- Contract step of tasks_tenant_ended_at_idx: its predecessor, a subset of it.
DROP INDEX CONCURRENTLY IF EXISTS tasks_tenant_finished_at_idx;

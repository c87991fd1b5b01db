-- Finished tasks of a tenant by when they finished (last updated), every final status:
-- what the retention job walks, oldest first, and what the dashboard's throughput
-- reads (its status IN ('COMPLETED', 'FAILED') implies this predicate, so the planner
-- uses it). Replaces tasks_tenant_finished_at_idx, which left CANCELLED out; that one
-- is dropped by the next migration, once this one exists. Built CONCURRENTLY: writes
-- go on while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_ended_at_idx
    ON tasks (tenant, updated_at) INCLUDE (status)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');

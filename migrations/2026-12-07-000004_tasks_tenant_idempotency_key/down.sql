DROP INDEX CONCURRENTLY IF EXISTS tasks_tenant_idempotency_key_idx;

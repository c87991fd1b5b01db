-- An Idempotency-Key is unique within its tenant: two tenants may use the same key.
-- The API's ON CONFLICT names these columns. Built CONCURRENTLY, see
-- tasks_tenant_newest_first_idx; the key unique across tenants goes in a later migration.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_idempotency_key_idx
    ON tasks (tenant, idempotency_key);

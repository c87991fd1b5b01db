-- A tenant's tasks newest first, and the keyset cursor (created_at, id) that pages
-- through them; also the tasks a tenant submitted per minute (throughput).
-- CONCURRENTLY: writes go on while it is built. Should the build fail, it leaves an
-- INVALID index that IF NOT EXISTS would keep: drop it and migrate again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_tenant_newest_first_idx
    ON tasks (tenant, created_at DESC, id DESC);

-- Tenants: every task belongs to the tenant of the credential that submitted it, and
-- the counts per status are kept per tenant.
--
-- Neither ALTER rewrites its table: a column added with a constant default and no
-- volatile expression is recorded in the catalogue (PostgreSQL 11+), and existing rows
-- read the default. Every task stored so far belongs to the tenant `default`, the one
-- `make run` and AUTH_DISABLED use.
--
-- Rollout: the default stays, so the previous release's inserts (which name no tenant)
-- land in `default`; the triggers below are what both releases' writes go through.
-- The indexes that serve per-tenant reads are built by the next migrations, one
-- statement each, CONCURRENTLY, so writes never wait for them.

ALTER TABLE tasks ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE task_status_counts ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';

CREATE OR REPLACE FUNCTION task_status_counts_fold() RETURNS void LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM task_status_counts
        WHERE id IN (
            SELECT id FROM task_status_counts ORDER BY id LIMIT 10000
            FOR UPDATE SKIP LOCKED
        )
        RETURNING tenant, status, delta
    )
    INSERT INTO task_status_counts (tenant, status, delta)
    SELECT tenant, status, sum(delta) FROM folded GROUP BY tenant, status
    HAVING sum(delta) <> 0;
$$;

CREATE OR REPLACE FUNCTION task_status_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_status_counts (tenant, status, delta)
        SELECT tenant, status, count(*) FROM new_tasks GROUP BY tenant, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_status_counts (tenant, status, delta)
        SELECT tenant, status, -count(*) FROM old_tasks GROUP BY tenant, status;
    ELSE
        -- Updates that leave the status alone (most of them) append nothing.
        INSERT INTO task_status_counts (tenant, status, delta)
        SELECT tenant, status, sum(delta)
        FROM (SELECT tenant, status, 1 AS delta FROM new_tasks
              UNION ALL
              SELECT tenant, status, -1 AS delta FROM old_tasks) AS changes
        GROUP BY tenant, status
        HAVING sum(delta) <> 0;
    END IF;
    -- One statement in 256 (at random) folds the log, keeping it short without a
    -- background job.
    IF random() < 1.0 / 256 THEN
        PERFORM task_status_counts_fold();
    END IF;
    RETURN NULL;
END;
$$;

-- The Idempotency-Key was unique across all tasks; it is now unique per tenant
-- (tasks_tenant_idempotency_key_idx), so the same key in two tenants makes two tasks.
-- Dropping a constraint takes a brief exclusive lock and reads no rows.
--
-- Rollout: the previous release's API names the dropped constraint's column alone in
-- its ON CONFLICT, which no longer has a matching unique index: its submits fail from
-- here until its replicas are replaced. That release has no authentication, so its
-- clients must change anyway; replace the API replicas together (workers are not
-- affected: they do not insert tasks). See the README's upgrade notes.
ALTER TABLE tasks DROP CONSTRAINT tasks_idempotency_key_key;

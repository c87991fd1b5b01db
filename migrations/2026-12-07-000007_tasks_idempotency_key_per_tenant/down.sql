-- Fails if two tenants hold the same key: that is the point of the migration.
ALTER TABLE tasks ADD CONSTRAINT tasks_idempotency_key_key UNIQUE (idempotency_key);

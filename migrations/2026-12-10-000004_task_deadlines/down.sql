ALTER TABLE tasks DROP COLUMN IF EXISTS deadline_at, DROP COLUMN IF EXISTS deadline_seconds;

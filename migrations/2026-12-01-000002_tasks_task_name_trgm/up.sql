-- Search by name: a substring, case-insensitive (ILIKE), through trigrams.
-- CONCURRENTLY: writes go on while it is built. Databases migrated before this was a
-- migration of its own built it in 2026-12-01-000001 and skip it here (IF NOT EXISTS).
-- Should the build fail, it leaves an INVALID index that IF NOT EXISTS would keep:
-- drop it and migrate again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_task_name_trgm_idx
    ON tasks USING gin (task_name gin_trgm_ops);

-- The contract step of the search change (f580dd5): search walks the tenant's
-- newest-first index in slices and has not read the trigram index since, so the release
-- before this one does not use it either. It cost a GIN entry on every insert and every
-- status update of a task (those updates are never HOT: status is indexed).
-- CONCURRENTLY: reads and writes of tasks go on while it is dropped. The extension
-- pg_trgm stays (other objects of the database may use it).
DROP INDEX CONCURRENTLY IF EXISTS tasks_task_name_trgm_idx;

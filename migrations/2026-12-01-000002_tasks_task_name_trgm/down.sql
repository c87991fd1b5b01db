DROP INDEX CONCURRENTLY IF EXISTS tasks_task_name_trgm_idx;

-- The dashboard (/ui): counts per status that never scan `tasks`, search by name, and
-- throughput over the last minutes.
--
-- Additive only, so the previous release keeps running against this schema (its writes
-- go through the triggers below like the new release's).

-- Counts per status, kept as a log of signed deltas: every statement that inserts,
-- deletes or changes the status of tasks appends one row per status it changed. A
-- count is the sum of its rows, read in well under a millisecond however large `tasks`
-- is. Writers only INSERT here, so they never wait for each other on a counter row (a
-- single counter row per status would serialise every status change in the system,
-- and hold that lock while, e.g., a re-drive publishes to Kafka inside its
-- transaction). The log is folded now and then (task_status_counts_fold) so it stays a
-- few hundred rows long.
CREATE TABLE task_status_counts (
    id     BIGSERIAL PRIMARY KEY,
    status TEXT   NOT NULL,
    delta  BIGINT NOT NULL
);

-- Folds the oldest rows of the log into one row per status. Rows locked by a fold
-- running in another transaction are skipped, so folds never wait for each other and
-- cannot deadlock; the sums are unchanged because the deleted rows and their total
-- are written in one transaction.
CREATE FUNCTION task_status_counts_fold() RETURNS void LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM task_status_counts
        WHERE id IN (
            SELECT id FROM task_status_counts ORDER BY id LIMIT 10000
            FOR UPDATE SKIP LOCKED
        )
        RETURNING status, delta
    )
    INSERT INTO task_status_counts (status, delta)
    SELECT status, sum(delta) FROM folded GROUP BY status HAVING sum(delta) <> 0;
$$;

-- Statement-level, with transition tables: a bulk INSERT of a million tasks appends
-- four rows, not a million.
CREATE FUNCTION task_status_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_status_counts (status, delta)
        SELECT status, count(*) FROM new_tasks GROUP BY status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_status_counts (status, delta)
        SELECT status, -count(*) FROM old_tasks GROUP BY status;
    ELSE
        -- Updates that leave the status alone (most of them) append nothing.
        INSERT INTO task_status_counts (status, delta)
        SELECT status, sum(delta)
        FROM (SELECT status, 1 AS delta FROM new_tasks
              UNION ALL
              SELECT status, -1 AS delta FROM old_tasks) AS changes
        GROUP BY status
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

CREATE FUNCTION task_status_counts_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_status_counts;
    RETURN NULL;
END;
$$;

-- Writers wait here until the counts are backfilled and the triggers exist, so no
-- change falls between the two.
LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER tasks_count_inserts AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_status_counts_record();
CREATE TRIGGER tasks_count_updates AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_status_counts_record();
CREATE TRIGGER tasks_count_deletes AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_status_counts_record();
CREATE TRIGGER tasks_count_truncates AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_status_counts_reset();

INSERT INTO task_status_counts (status, delta)
SELECT status, count(*) FROM tasks GROUP BY status;

-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension, which the
-- managed services offer too. The trigram index on task names is built by the next
-- migration, CONCURRENTLY: built here, inside this transaction and its lock, it held
-- every write to tasks for 4.8 s at a million tasks (this migration once did).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- This migration also once built tasks_finished_at_idx (updated_at, for throughput),
-- the same way. 2026-12-07-000010 drops it again, so a fresh database no longer builds
-- it at all; databases that have it lose it there.

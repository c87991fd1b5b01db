-- The data-model ceiling: the rows the system writes for a task of the README example
-- (1 item x 3 services), written for 64 tasks at a time in three transactions, as group
-- commit at its best would: PostgreSQL alone doing the system's writes, into the schema
-- the project migrated (its indexes, count and event triggers included). One script run
-- is 64 tasks. The system itself writes them in five group-commit transactions (accept,
-- outbox mark, start, outcomes, settle); merging them gives the ceiling the end-to-end
-- rate is compared with. Row shapes are those of the store's `lifecycle::accept`,
-- `outbox::mark_published`, `lifecycle::start`, `lifecycle::record` and `lifecycle::finish`.
--
-- Each run's task ids are derived from the client and a random key, so every statement
-- finds its tasks by the unique index on task_id, as the system does.

\set key random(1, 9000000000000000)

-- 1. Accept: the tasks and their outbox rows.
BEGIN;
WITH accepted AS (
    INSERT INTO tasks (task_id, task_name, task_description, payload)
    SELECT md5(:client_id || '-' || :key || '-' || g)::uuid,
           'Quarterly forecast', 'Revenue, rebates and specialty for Q4',
           '[{"revenue": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "rebates": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "specialty": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}}]'
      FROM generate_series(1, 64) AS g
    RETURNING task_id, created_at
)
INSERT INTO task_outbox (task_id, created_at) SELECT task_id, created_at FROM accepted;
COMMIT;

-- 2. Published (the outbox rows go), then started: lock the tasks, create their service
--    requests running, mark the tasks running.
BEGIN;
DELETE FROM task_outbox
 WHERE task_id IN (SELECT md5(:client_id || '-' || :key || '-' || g)::uuid FROM generate_series(1, 64) AS g);
SELECT task_id FROM tasks
 WHERE task_id IN (SELECT md5(:client_id || '-' || :key || '-' || g)::uuid FROM generate_series(1, 64) AS g)
   FOR UPDATE;
INSERT INTO service_requests (id, task_id, item_index, service_name, scenario_id, business_type_id,
                              status, started_at, request_payload)
SELECT gen_random_uuid(), md5(:client_id || '-' || :key || '-' || g)::uuid, 0, s.name,
       '3fa85f64-5717-4562-b3fc-2c963f66afa6', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70',
       'IN_PROGRESS', now(), '{"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}'
  FROM generate_series(1, 64) AS g, (VALUES ('revenue'), ('rebates'), ('specialty')) AS s(name);
UPDATE tasks SET status = 'IN_PROGRESS', updated_at = now()
 WHERE task_id IN (SELECT md5(:client_id || '-' || :key || '-' || g)::uuid FROM generate_series(1, 64) AS g);
COMMIT;

-- 3. The outcomes of the service requests, then the tasks settled.
BEGIN;
UPDATE service_requests
   SET status = 'COMPLETED', attempts = attempts + 1, completed_at = now(), updated_at = now(),
       response_payload = jsonb_build_object('service', service_name,
           'scenario_id', '3fa85f64-5717-4562-b3fc-2c963f66afa6',
           'business_type_id', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70',
           'result', '{"amount": 6190.91, "currency": "USD", "line_items": 1, "confidence": 0.169}'::jsonb)
 WHERE task_id IN (SELECT md5(:client_id || '-' || :key || '-' || g)::uuid FROM generate_series(1, 64) AS g)
   AND status = 'IN_PROGRESS';
UPDATE tasks SET status = 'COMPLETED', error_message = NULL, updated_at = now()
 WHERE task_id IN (SELECT md5(:client_id || '-' || :key || '-' || g)::uuid FROM generate_series(1, 64) AS g);
COMMIT;

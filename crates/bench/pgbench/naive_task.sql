-- One task of the README example (1 item x 3 services) written the naive way: every
-- step its own transaction, each a separate commit (and WAL flush), as a worker that
-- batches nothing would write it. The benchmark runs it with pgbench
-- (`-M prepared`, one script run = one task) as the PostgreSQL ceiling that the
-- end-to-end rate is compared with. The steps and row shapes are those of the store's
-- `lifecycle::accept::insert`, `start_task`, `record_finished` (x3) and `settle`; the lease fence
-- check (a read) is left out, so this ceiling is if anything a little high.

-- 1. Accept: the task row.
INSERT INTO tasks (task_id, task_name, task_description, payload)
VALUES (gen_random_uuid(), 'Quarterly forecast', 'Revenue, rebates and specialty for Q4',
        '[{"revenue": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "rebates": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "specialty": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}}]')
RETURNING task_id \gset

-- 2. Start: lock the task, create its three service requests, mark it and them running.
BEGIN;
SELECT status FROM tasks WHERE task_id = :task_id FOR UPDATE;
INSERT INTO service_requests (id, task_id, item_index, service_name, scenario_id, business_type_id, request_payload)
VALUES (gen_random_uuid(), :task_id, 0, 'revenue', '3fa85f64-5717-4562-b3fc-2c963f66afa6', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70', '{"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}'),
       (gen_random_uuid(), :task_id, 0, 'rebates', '3fa85f64-5717-4562-b3fc-2c963f66afa6', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70', '{"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}'),
       (gen_random_uuid(), :task_id, 0, 'specialty', '3fa85f64-5717-4562-b3fc-2c963f66afa6', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70', '{"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}')
ON CONFLICT DO NOTHING;
UPDATE tasks SET status = 'IN_PROGRESS', updated_at = now() WHERE task_id = :task_id;
UPDATE service_requests
SET status = 'IN_PROGRESS', started_at = COALESCE(started_at, now()), updated_at = now()
WHERE task_id = :task_id AND status IN ('PENDING', 'IN_PROGRESS')
RETURNING id;
COMMIT;

-- 3. Each service request's outcome, as it arrives: three transactions.
UPDATE service_requests
SET status = 'COMPLETED', attempts = attempts + 1, started_at = now(), completed_at = now(), updated_at = now(),
    response_payload = '{"service": "revenue", "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70", "result": {"amount": 6190.91, "currency": "USD", "line_items": 1, "confidence": 0.169}}'
WHERE task_id = :task_id AND item_index = 0 AND service_name = 'revenue' AND status = 'IN_PROGRESS';
UPDATE service_requests
SET status = 'COMPLETED', attempts = attempts + 1, started_at = now(), completed_at = now(), updated_at = now(),
    response_payload = '{"service": "rebates", "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70", "result": {"amount": 6190.91, "currency": "USD", "line_items": 1, "confidence": 0.169}}'
WHERE task_id = :task_id AND item_index = 0 AND service_name = 'rebates' AND status = 'IN_PROGRESS';
UPDATE service_requests
SET status = 'COMPLETED', attempts = attempts + 1, started_at = now(), completed_at = now(), updated_at = now(),
    response_payload = '{"service": "specialty", "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70", "result": {"amount": 6190.91, "currency": "USD", "line_items": 1, "confidence": 0.169}}'
WHERE task_id = :task_id AND item_index = 0 AND service_name = 'specialty' AND status = 'IN_PROGRESS';

-- 4. Settle: lock the task, read its service requests, write the final status.
BEGIN;
SELECT status FROM tasks WHERE task_id = :task_id FOR UPDATE;
SELECT item_index, service_name, status, error_message FROM service_requests WHERE task_id = :task_id;
UPDATE tasks SET status = 'COMPLETED', error_message = NULL, updated_at = now() WHERE task_id = :task_id;
COMMIT;

-- The accept path written the naive way: the task row and its outbox row in one
-- transaction, then its outbox mark (the broker acknowledged its record: the outbox row
-- is deleted) in another, as an API that batches nothing would write them. The
-- benchmark runs it with pgbench (`-M prepared`, one script run = one accepted task) as
-- the PostgreSQL ceiling that the accept rate is compared with. Row shapes are those of
-- the store's `lifecycle::accept::insert_many_queued` and `outbox::mark_published`.

WITH task AS (
    INSERT INTO tasks (task_id, task_name, task_description, payload)
    VALUES (gen_random_uuid(), 'Quarterly forecast', 'Revenue, rebates and specialty for Q4',
            '[{"revenue": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "rebates": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}, "specialty": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}}]')
    RETURNING task_id, created_at
)
INSERT INTO task_outbox (task_id, created_at) SELECT task_id, created_at FROM task
RETURNING task_id \gset

DELETE FROM task_outbox WHERE task_id = :task_id;

-- Step 2 of widening the status constraints (see 2026-12-10-000001): every existing row
-- is checked, under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes.
ALTER TABLE tasks VALIDATE CONSTRAINT tasks_status_known;
ALTER TABLE service_requests VALIDATE CONSTRAINT service_requests_status_known;

-- Step 3 of widening the status constraints (see 2026-12-10-000001): the constraints
-- that allow only the four original statuses go. A brief exclusive lock, no scan.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE service_requests DROP CONSTRAINT service_requests_status_check;

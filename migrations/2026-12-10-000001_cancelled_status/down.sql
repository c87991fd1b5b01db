ALTER TABLE service_requests DROP CONSTRAINT IF EXISTS service_requests_status_known;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_status_known;

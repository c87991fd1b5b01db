-- CANCELLED joins the statuses of tasks and service requests. Widening a CHECK
-- constraint on a live table takes three migrations, so that no step blocks writes for
-- longer than a catalogue change and the previous release keeps running throughout
-- (it never writes CANCELLED, so both the old and the new constraint hold its rows):
--   1. (this one) add the wider constraint NOT VALID: a brief exclusive lock, no scan;
--      new and updated rows are checked from here on;
--   2. validate it: a scan under SHARE UPDATE EXCLUSIVE, which lets reads and writes go
--      on;
--   3. drop the narrow one: a brief exclusive lock, no scan.
-- Until step 3 both constraints apply: nothing can be CANCELLED before the new release
-- runs, and it runs only once all migrations are applied.
ALTER TABLE tasks ADD CONSTRAINT tasks_status_known
    CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED')) NOT VALID;
ALTER TABLE service_requests ADD CONSTRAINT service_requests_status_known
    CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED')) NOT VALID;

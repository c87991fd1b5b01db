-- Background jobs that must run in one process at a time however many replicas run
-- (the retention job): whoever holds a job's row until expires_at runs it, renewing as
-- it goes; a process that dies leaves the row to expire. A row rather than a session
-- advisory lock so that it also works through a connection pooler in transaction mode.
--
-- Additive only: the previous release ignores it.
CREATE TABLE job_leases (
    job        TEXT        PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

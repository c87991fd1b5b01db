-- The W3C trace context of the request that accepted the task (`traceparent`,
-- "00-<trace id>-<span id>-<flags>"): every run of the task (the worker's, an inline
-- resume, a re-drive) joins that trace, and GET /api/tasks/{id} answers its trace id.
-- Nullable without a default: a catalogue change only. Tasks of the previous release
-- have none.
ALTER TABLE tasks ADD COLUMN traceparent TEXT;

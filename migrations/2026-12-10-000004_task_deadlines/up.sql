-- A task's optional deadline: how long it may take (deadline_seconds, as submitted) and
-- when it runs out (deadline_at: accepted + deadline_seconds, moved on by a re-drive).
-- Nullable without a default and without a CHECK (which would scan the table under an
-- exclusive lock): a catalogue change only. The API bounds the value. The previous
-- release inserts without them, and its tasks have no deadline.
ALTER TABLE tasks
    ADD COLUMN deadline_seconds INTEGER,
    ADD COLUMN deadline_at TIMESTAMPTZ;

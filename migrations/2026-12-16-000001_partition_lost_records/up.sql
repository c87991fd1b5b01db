-- A partition whose log lost records the consumer had not read (they expired under its
-- committed offset, or the log was truncated or recreated): the tasks of those records
-- are still in `tasks`, unfinished. The owner runs them once it has read the log that
-- survived up to `recover_at_offset` (the log's end when the loss was seen), so that a
-- task whose record survived runs from its record, not twice. `lost_before` bounds the
-- tasks to run: those accepted before the loss was seen. Both NULL when nothing is
-- owed. Kept on the lease row so that an owner that dies first leaves the debt to the
-- next one.
--
-- Nullable without defaults: a catalogue change only; the previous release neither
-- reads nor writes them. The CHECK is validated against a table of one row per
-- partition.
ALTER TABLE partition_leases
    ADD COLUMN lost_before TIMESTAMPTZ,
    ADD COLUMN recover_at_offset BIGINT,
    ADD CONSTRAINT partition_leases_lost_together
        CHECK ((lost_before IS NULL) = (recover_at_offset IS NULL));

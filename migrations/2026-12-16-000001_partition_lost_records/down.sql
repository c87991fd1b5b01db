ALTER TABLE partition_leases
    DROP CONSTRAINT IF EXISTS partition_leases_lost_together,
    DROP COLUMN IF EXISTS recover_at_offset,
    DROP COLUMN IF EXISTS lost_before;

DROP TABLE bulk_operations;
ALTER TABLE audit_events DROP COLUMN details;

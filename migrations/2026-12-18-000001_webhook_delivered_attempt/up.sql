-- A delivered webhook's successful attempt is kept on its delivery's row, as a service
-- request's is on its own: webhook_attempts holds the failed attempts only. Almost every
-- delivery succeeds at the first try, and a row of webhook_attempts per delivery (an
-- insert, its primary key, and the foreign key's check, which locks the delivery's row)
-- was the larger part of what a webhook cost PostgreSQL.
--
-- Nullable columns without defaults: a catalogue change, no rewrite. The previous
-- release keeps running against it (it writes every attempt as a row and leaves these
-- NULL; readers take a delivery's attempts from both places).
ALTER TABLE webhook_deliveries
    ADD COLUMN delivered_attempted_at TIMESTAMPTZ,
    ADD COLUMN delivered_duration_ms  BIGINT,
    ADD COLUMN delivered_status_code  INTEGER;

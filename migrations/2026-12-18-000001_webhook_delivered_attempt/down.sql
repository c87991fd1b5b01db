-- The successful attempts go back to webhook_attempts before their columns go.
INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, duration_ms, status_code)
SELECT id, attempts, delivered_attempted_at, delivered_duration_ms, delivered_status_code
FROM webhook_deliveries
WHERE delivered_attempted_at IS NOT NULL
ON CONFLICT (delivery_id, attempt) DO NOTHING;

ALTER TABLE webhook_deliveries
    DROP COLUMN delivered_attempted_at,
    DROP COLUMN delivered_duration_ms,
    DROP COLUMN delivered_status_code;

DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_deliveries;
ALTER TABLE tasks DROP COLUMN IF EXISTS callback_url;

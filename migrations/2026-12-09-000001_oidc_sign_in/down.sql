ALTER TABLE dashboard_sessions DROP COLUMN IF EXISTS subject;
DROP TABLE IF EXISTS oidc_sign_ins;

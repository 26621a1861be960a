-- Undoes user_api_key.notify.up.sql.
DROP TRIGGER IF EXISTS keygate_key_changed ON api.user_api_key;
DROP FUNCTION IF EXISTS api.keygate_key_changed();

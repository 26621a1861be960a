-- Undoes auth_api_key.notify.up.sql.
DROP TRIGGER IF EXISTS keygate_key_changed ON auth.api_key;
DROP FUNCTION IF EXISTS auth.keygate_key_changed();

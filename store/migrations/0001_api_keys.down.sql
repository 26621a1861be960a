DROP TABLE IF EXISTS api_key_usage;
DROP TABLE IF EXISTS api_keys;
DROP FUNCTION IF EXISTS api_keys_notify_changed();
DROP FUNCTION IF EXISTS api_keys_touch_updated_at();

-- Back to 0002's keys and foreign key. Usage rows whose key no longer exists (inserted by hand
-- meanwhile: the writer never adds any) would keep the foreign key out, so they go first.

DROP TRIGGER api_keys_usage_keeps_id ON api_keys;
DROP FUNCTION api_keys_usage_keeps_id();
DROP TRIGGER api_keys_truncate_usage ON api_keys;
DROP FUNCTION api_keys_truncate_usage();
DROP TRIGGER api_keys_delete_usage ON api_keys;
DROP FUNCTION api_keys_delete_usage();

DELETE FROM api_key_usage u WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = u.api_key_id);

ALTER TABLE api_key_usage
  DROP CONSTRAINT api_key_usage_pkey,
  ADD CONSTRAINT api_key_usage_pkey PRIMARY KEY (id, created_at),
  ADD CONSTRAINT api_key_usage_event_id_key UNIQUE (event_id, created_at),
  ADD CONSTRAINT api_key_usage_api_key_id_fkey
    FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE CASCADE;

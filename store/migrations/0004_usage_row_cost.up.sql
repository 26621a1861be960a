-- What a usage row costs PostgreSQL (issue #5: usage logging must cost < 10% of throughput).
-- Measured with bench/usage_rows, the two largest per-row costs left once the writer COPYs
-- straight into api_key_usage were the foreign key to api_keys (a trigger that runs a
-- SELECT .. FOR KEY SHARE through SPI for every row: about half of PostgreSQL's CPU per row)
-- and a second unique index.
--
-- 1. (event_id, created_at) becomes the primary key, and the primary key on (id, created_at)
--    goes: it was a second unique index that nothing looks rows up by. id stays, as seed 003's
--    column, still filled by its identity sequence, just no longer indexed.
-- 2. The foreign key goes; what it did is kept by cheaper means:
--    - ON DELETE CASCADE: one statement-level trigger on api_keys deletes the usage rows of
--      the keys a DELETE removed (and TRUNCATE api_keys truncates api_key_usage);
--    - changing a referenced api_keys.id is refused, as the foreign key's NO ACTION did;
--    - no row for a key that does not exist: keygate's usage writer locks the keys of each
--      batch (SELECT .. FOR KEY SHARE, once per key instead of once per row, in the batch's
--      transaction) and leaves out the rows whose key is gone. Rows inserted by hand are not
--      checked any more.
-- Both rebuild or drop per-partition objects: on a large usage table, run it when quiet.

ALTER TABLE api_key_usage
  DROP CONSTRAINT api_key_usage_api_key_id_fkey,
  DROP CONSTRAINT api_key_usage_pkey,
  DROP CONSTRAINT api_key_usage_event_id_key,
  ADD CONSTRAINT api_key_usage_pkey PRIMARY KEY (event_id, created_at);

CREATE FUNCTION api_keys_delete_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM api_key_usage u USING deleted_keys d WHERE u.api_key_id = d.id;
  RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_delete_usage AFTER DELETE ON api_keys
  REFERENCING OLD TABLE AS deleted_keys
  FOR EACH STATEMENT EXECUTE FUNCTION api_keys_delete_usage();

CREATE FUNCTION api_keys_truncate_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE api_key_usage;
  RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_truncate_usage AFTER TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION api_keys_truncate_usage();

CREATE FUNCTION api_keys_usage_keeps_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM api_key_usage WHERE api_key_id = OLD.id) THEN
    RAISE foreign_key_violation
      USING MESSAGE = format('api_keys.id %s is still referenced from table "api_key_usage"', OLD.id);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_usage_keeps_id AFTER UPDATE OF id ON api_keys
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION api_keys_usage_keeps_id();

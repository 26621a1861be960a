-- Optional, for preset user_api_key (seed 002): revocation within a second. A change to a
-- column keygate reads, or a deleted row, sends keygate_key_changed; every keygate listening
-- drops its key cache and reads the table again. (keygate's own last-used updates touch no
-- column listed here, so they send nothing.) Without this trigger a change takes effect within
-- cache.ttl. Run as the table's owner; undo with user_api_key.notify.down.sql.
CREATE FUNCTION api.keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keygate_key_changed', '');
    RETURN NULL;
END $$;
CREATE TRIGGER keygate_key_changed
    AFTER UPDATE OF api_key_id, key_name, key_id, user_id, is_active OR DELETE ON api.user_api_key
    FOR EACH STATEMENT EXECUTE FUNCTION api.keygate_key_changed();

-- Optional, for preset supabase_api_keys (seed 000): revocation within a second. A change to a
-- column keygate reads, or a deleted row, sends keygate_key_changed; every keygate listening
-- drops its key cache and reads the table again. (keygate's own last-used updates touch no
-- column listed here, so they send nothing.) Without this trigger a change takes effect within
-- cache.ttl. Run as the table's owner; undo with supabase_api_keys.notify.down.sql.
CREATE FUNCTION public.keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keygate_key_changed', '');
    RETURN NULL;
END $$;
CREATE TRIGGER keygate_key_changed
    AFTER UPDATE OF user_id, name, key, permissions, expires_at OR DELETE ON public.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION public.keygate_key_changed();

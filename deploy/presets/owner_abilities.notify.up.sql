-- Optional, for preset owner_abilities (seed 004): revocation within a second. A change to a
-- column keygate reads, or a deleted row, sends keygate_key_changed; every keygate listening
-- drops its key cache and reads the table again. (keygate's own last-used updates touch no
-- column listed here, so they send nothing.) Without this trigger a change takes effect within
-- cache.ttl. Run as the table's owner; undo with owner_abilities.notify.down.sql.
CREATE FUNCTION public.keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keygate_key_changed', '');
    RETURN NULL;
END $$;
CREATE TRIGGER keygate_key_changed
    AFTER UPDATE OF owner_type, owner_id, name, key_hash, abilities, expires_at, is_active, revoked_at, rate_limit, window_seconds, allowed_ips OR DELETE ON public.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION public.keygate_key_changed();

-- Undoes owner_abilities.notify.up.sql.
DROP TRIGGER IF EXISTS keygate_key_changed ON public.api_keys;
DROP FUNCTION IF EXISTS public.keygate_key_changed();

-- keygate in front of public.api_keys (seed 000, preset supabase_api_keys): what the role
-- keygate connects as needs. Row-level security admits only the key's own user; keygate
-- reads every key, so it gets a SELECT policy of its own. UPDATE on last_used lets keygate
-- keep it current. Run as the table's owner; replace keygate with your role's name.
GRANT USAGE ON SCHEMA public TO keygate;
GRANT SELECT (id, user_id, name, key, permissions, expires_at) ON public.api_keys TO keygate;
GRANT SELECT (id, last_used), UPDATE (last_used) ON public.api_keys TO keygate;
CREATE POLICY keygate_reads_keys ON public.api_keys FOR SELECT TO keygate USING (true);
CREATE POLICY keygate_marks_use ON public.api_keys FOR UPDATE TO keygate USING (true) WITH CHECK (true);

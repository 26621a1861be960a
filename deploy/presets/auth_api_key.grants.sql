-- keygate in front of auth.api_key (seed 001, preset auth_api_key): what the role keygate
-- connects as needs. The table has row-level security whose policies admit only the key's
-- own user (auth.uid()); keygate reads every key, so it gets a SELECT policy of its own and
-- SELECT on the columns the preset reads (and nothing else: it never writes this table).
-- Run as the table's owner; replace keygate with your role's name.
--
--   CREATE ROLE keygate LOGIN PASSWORD '...';   -- if it does not exist yet
GRANT USAGE ON SCHEMA auth TO keygate;
GRANT SELECT (jti, user_id, description, expires_at, revoked_at, token) ON auth.api_key TO keygate;
CREATE POLICY keygate_reads_keys ON auth.api_key FOR SELECT TO keygate USING (true);

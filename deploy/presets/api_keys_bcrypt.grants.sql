-- keygate in front of api_keys + api_key_usage (seed 003, preset api_keys_bcrypt): what the
-- role keygate connects as needs: read the key columns, keep last_used_at current, and
-- append usage rows. Run as the tables' owner; replace keygate with your role's name.
GRANT SELECT (id, user_id, key_hash, key_prefix, name, scopes, is_active, expires_at, revoked_at, last_used_at)
    ON api_keys TO keygate;
GRANT UPDATE (last_used_at) ON api_keys TO keygate;
GRANT INSERT (api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_ms, created_at)
    ON api_key_usage TO keygate;
GRANT USAGE ON SEQUENCE api_key_usage_id_seq TO keygate;

-- keygate in front of api_keys (seed 004, preset owner_abilities): what the role keygate
-- connects as needs: read the key columns and keep last_used_at current. Run as the table's
-- owner; replace keygate with your role's name.
GRANT SELECT (id, owner_type, owner_id, name, key_hash, abilities, last_used_at, expires_at, is_active,
              revoked_at, rate_limit, window_seconds, allowed_ips)
    ON api_keys TO keygate;
GRANT UPDATE (last_used_at) ON api_keys TO keygate;

-- keygate in front of api.user_api_key (seed 002, preset user_api_key): what the role keygate
-- connects as needs: read the key columns, and keep last_used current. key_id holds the
-- SHA-256 (hex) of the key: with keygate as the gateway, that is the identifier the gateway
-- knows a key by. Run as the table's owner; replace keygate with your role's name.
GRANT USAGE ON SCHEMA api TO keygate;
GRANT SELECT (api_key_id, key_name, key_id, user_id, is_active, last_used) ON api.user_api_key TO keygate;
GRANT UPDATE (last_used) ON api.user_api_key TO keygate;

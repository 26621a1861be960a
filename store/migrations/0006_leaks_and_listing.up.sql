-- Leaked-key reports and SQL-side pagination of the key-management API (issue 14).
--
-- leaked_at: when a secret-scanning report (POST /v1/leaks) named the key while keygate is
-- configured to flag rather than revoke (leaks.action: flag); the key keeps working, its owner
-- sees the mark. Set once: a later report keeps the first time.
ALTER TABLE api_keys ADD COLUMN leaked_at timestamptz;
GRANT UPDATE (leaked_at) ON api_keys TO keygate_api;

-- GET /v1/keys pages by (created_at, id) (keyset pagination): the operator's listing of every
-- owner needs this index as much as an owner's needs api_keys_owner_idx.
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);

-- Undoes 0005 in this database: the audit log (its rows go), the policies, row-level security
-- and every grant to keygate_api.
--
-- The role keygate_api itself stays, with its memberships: roles are cluster-wide, so other
-- databases of the cluster may be using it (PostgreSQL would refuse to drop it, or worse, a
-- migration of another database running at the same time could find it gone), and it may have
-- been created by a superuser by hand because keygate's role may not create roles. Without
-- grants here it can do nothing in this database. Once no database uses it, a superuser can
-- drop it: DROP ROLE keygate_api (refused while any database still grants it anything).

DROP POLICY api_key_audit_append ON api_key_audit;
DROP POLICY api_key_audit_read ON api_key_audit;
DROP POLICY api_key_quota_usage_owner_isolation ON api_key_quota_usage;
DROP POLICY api_key_usage_owner_isolation ON api_key_usage;
DROP POLICY api_keys_owner_isolation ON api_keys;

ALTER TABLE api_key_quota_usage DISABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_usage DISABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY;

DROP TABLE api_key_audit;
DROP FUNCTION keygate_api_sees(text, text);

ALTER FUNCTION api_keys_delete_usage() SECURITY INVOKER RESET search_path;

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'keygate_api') THEN
    -- Column privileges (UPDATE (...) on api_keys) go with the table's.
    REVOKE ALL ON api_keys, api_key_usage, api_key_quota_usage FROM keygate_api;
    -- USAGE on the schema, if the up migration granted it (not when PUBLIC had it).
    IF EXISTS (SELECT FROM pg_namespace n, aclexplode(n.nspacl) a
               WHERE n.nspname = current_schema() AND a.grantee = 'keygate_api'::regrole) THEN
      EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM keygate_api', current_schema());
    END IF;
  END IF;
END
$$;

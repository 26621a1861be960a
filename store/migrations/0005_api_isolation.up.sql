-- Owner isolation for the key-management API (issue 14), enforced by PostgreSQL as well as by
-- the handlers: the API runs each request in one transaction as the role keygate_api
-- (SET LOCAL ROLE keygate_api) with the transaction-local setting keygate.owner
-- (store/api_session.hpp), and row-level security lets that role see only:
--   keygate.owner = '*'            an operator: every row;
--   keygate.owner = 'type:id'      that owner's keys, their usage and quota rows, the audit
--                                  rows about them;
--   unset or anything else         nothing.
-- A forged setting cannot widen an owner's view beyond what that setting names, and a bug in a
-- handler that forgets a WHERE owner = ... reads nothing it should not.
--
-- Only keygate_api is subject to these policies. The tables' owner (the role that migrates,
-- which keygate's proxy, usage writer and CLI connect as) bypasses RLS because it is not
-- FORCEd, so the request path is unchanged. A deployment whose proxy connects as some other,
-- non-owner role would need a policy of its own for that role: RLS without a policy for a role
-- shows it no rows.
--
-- The role is cluster-wide: it is created once (by the first database migrated) and shared.

DO $$
DECLARE
  me text := current_user;
  api pg_roles%ROWTYPE;
  owner_name text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keygate_api') THEN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = me AND (rolcreaterole OR rolsuper)) THEN
      RAISE EXCEPTION 'role keygate_api does not exist and % may not create roles: as a superuser, run '
                      '"CREATE ROLE keygate_api NOLOGIN NOBYPASSRLS; GRANT keygate_api TO %;" '
                      'then migrate again', me, quote_ident(me)
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    BEGIN
      CREATE ROLE keygate_api NOLOGIN NOBYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- created meanwhile by the migration of another database in this cluster
    END;
  END IF;

  -- An existing role (made by hand, or by another database's migration) must be one RLS holds
  -- for: the policies would not apply to a superuser or a BYPASSRLS role, and a role that can log
  -- in could claim keygate.owner = '*' on its own.
  SELECT * INTO api FROM pg_roles WHERE rolname = 'keygate_api';
  IF api.rolsuper OR api.rolbypassrls OR api.rolcanlogin THEN
    RAISE EXCEPTION 'role keygate_api must be NOSUPERUSER NOBYPASSRLS NOLOGIN: as a superuser, run '
                    '"ALTER ROLE keygate_api NOSUPERUSER NOBYPASSRLS NOLOGIN;" then migrate again'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- RLS does not apply to a table's owner, nor to a role with the owner's privileges.
  SELECT r.rolname INTO owner_name
    FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
    WHERE c.oid IN ('api_keys'::regclass, 'api_key_usage'::regclass, 'api_key_quota_usage'::regclass)
      AND pg_has_role('keygate_api', c.relowner, 'USAGE')
    LIMIT 1;
  IF owner_name IS NULL AND pg_has_role('keygate_api', me, 'USAGE') THEN
    owner_name := me;  -- who will own api_key_audit
  END IF;
  IF owner_name IS NOT NULL THEN
    RAISE EXCEPTION 'role keygate_api has the privileges of %, which owns keygate''s tables, so '
                    'row-level security would not apply to it: as a superuser, run '
                    '"REVOKE % FROM keygate_api;" then migrate again', owner_name, quote_ident(owner_name)
      USING ERRCODE = 'insufficient_privilege';
  END IF;

  -- The migrating role (the one keygate connects as) switches to keygate_api per transaction.
  IF NOT pg_has_role(me, 'keygate_api', 'MEMBER') THEN
    BEGIN
      EXECUTE format('GRANT keygate_api TO %I', me);
    EXCEPTION
      WHEN unique_violation THEN NULL;  -- granted meanwhile by another database's migration
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION '% may not grant itself the role keygate_api: as a superuser, run '
                        '"GRANT keygate_api TO %;" then migrate again', me, quote_ident(me)
          USING ERRCODE = 'insufficient_privilege';
    END;
  END IF;

  -- The tables live in the schema this migration runs in (the first on the search_path). In
  -- public, PUBLIC usually has USAGE already (and only public's owner could grant it).
  IF NOT has_schema_privilege('keygate_api', current_schema(), 'USAGE') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO keygate_api', current_schema());
  END IF;
  -- Deleting a key deletes its usage rows through this statement trigger (0004). keygate_api may
  -- not delete usage rows itself, so the trigger runs as its owner, with a fixed search_path.
  EXECUTE format('ALTER FUNCTION api_keys_delete_usage() SECURITY DEFINER SET search_path = %I, pg_temp',
                 current_schema());
END
$$;

-- The audit log: one row per change made through the API, written in the change's transaction.
-- Append-only for keygate_api (no UPDATE or DELETE grant). No foreign key to api_keys: the rows
-- of a deleted key stay.
CREATE TABLE api_key_audit (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  actor_key_id uuid,  -- the admin key that made the change; NULL when none did (a leak report)
  actor_owner  text,  -- that key's owner scope ('*' or 'type:id'); NULL with actor_key_id
  action       text NOT NULL,
  key_id       uuid NOT NULL,
  key_owner    text NOT NULL,  -- 'type:id' of the key changed: what owners' reads are keyed on
  before       jsonb,          -- the key before the change (NULL for create)
  after        jsonb,          -- and after it (NULL for delete)
  request_id   text NOT NULL,
  source_url   text,           -- where a leaked key was found (leak_revoke, leak_flag)
  CONSTRAINT api_key_audit_action_known
    CHECK (action IN ('create', 'update', 'revoke', 'rotate', 'delete', 'leak_revoke', 'leak_flag')),
  CONSTRAINT api_key_audit_key_owner_form
    CHECK (strpos(key_owner, ':') > 1 AND strpos(key_owner, ':') < length(key_owner)),
  -- Never a secret: neither a key nor its hash.
  CONSTRAINT api_key_audit_no_secrets
    CHECK (NOT coalesce(before ?| ARRAY['key', 'key_hash'], false)
           AND NOT coalesce(after ?| ARRAY['key', 'key_hash'], false))
);

CREATE INDEX api_key_audit_key_owner_idx ON api_key_audit (key_owner, id);
CREATE INDEX api_key_audit_key_id_idx ON api_key_audit (key_id, id);

-- Whether keygate.owner lets keygate_api see a row of this owner. An owner_type containing ':'
-- matches no owner setting (its 'type:id' would be ambiguous), only '*'.
CREATE FUNCTION keygate_api_sees(owner_type text, owner_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT coalesce(current_setting('keygate.owner', true) = '*'
                  OR (strpos(owner_type, ':') = 0
                      AND current_setting('keygate.owner', true) = owner_type || ':' || owner_id),
                  false)
$$;

-- What the API needs, no more. UPDATE is limited to what PATCH, revoke and rotate change: never
-- id, owner, key_hash, key_prefix or the bookkeeping columns.
GRANT SELECT, INSERT, DELETE ON api_keys TO keygate_api;
GRANT UPDATE (name, description, scopes, allowed_ips, rate_limit, window_seconds, quota,
              quota_period_seconds, metadata, is_active, expires_at, revoked_at)
  ON api_keys TO keygate_api;
GRANT SELECT ON api_key_usage TO keygate_api;  -- its partitions are read through the parent only
-- Rotation copies the quota already used to the new key (store/key_repository.cpp).
GRANT SELECT, INSERT ON api_key_quota_usage TO keygate_api;
-- Its identity column needs no grant on the sequence.
GRANT SELECT, INSERT ON api_key_audit TO keygate_api;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_quota_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_audit ENABLE ROW LEVEL SECURITY;

-- USING hides the rows of other owners from SELECT, UPDATE and DELETE; WITH CHECK refuses a
-- row, inserted or updated, that would belong to another owner.
CREATE POLICY api_keys_owner_isolation ON api_keys TO keygate_api
  USING (keygate_api_sees(owner_type, owner_id))
  WITH CHECK (keygate_api_sees(owner_type, owner_id));

CREATE POLICY api_key_usage_owner_isolation ON api_key_usage FOR SELECT TO keygate_api
  USING (EXISTS (SELECT FROM api_keys k
                 WHERE k.id = api_key_usage.api_key_id AND keygate_api_sees(k.owner_type, k.owner_id)));

CREATE POLICY api_key_quota_usage_owner_isolation ON api_key_quota_usage TO keygate_api
  USING (EXISTS (SELECT FROM api_keys k
                 WHERE k.id = api_key_quota_usage.api_key_id AND keygate_api_sees(k.owner_type, k.owner_id)))
  WITH CHECK (EXISTS (SELECT FROM api_keys k
                      WHERE k.id = api_key_quota_usage.api_key_id
                        AND keygate_api_sees(k.owner_type, k.owner_id)));

CREATE POLICY api_key_audit_read ON api_key_audit FOR SELECT TO keygate_api
  USING (current_setting('keygate.owner', true) IN ('*', key_owner));
CREATE POLICY api_key_audit_append ON api_key_audit FOR INSERT TO keygate_api
  WITH CHECK (current_setting('keygate.owner', true) IN ('*', key_owner));

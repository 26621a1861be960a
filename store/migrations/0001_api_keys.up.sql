-- API keys (only a hash of each key is stored) and one usage row per keyed request.

CREATE TABLE api_keys (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_type           text NOT NULL,
  owner_id             text NOT NULL,
  name                 text NOT NULL,
  description          text,
  key_prefix           text NOT NULL,
  key_hash             bytea NOT NULL UNIQUE,
  scopes               text[] NOT NULL DEFAULT '{}',
  allowed_ips          cidr[] NOT NULL DEFAULT '{}',
  rate_limit           integer,
  window_seconds       integer,
  quota                bigint,
  quota_period_seconds integer,
  metadata             jsonb NOT NULL DEFAULT '{}',
  is_active            boolean NOT NULL DEFAULT true,
  expires_at           timestamptz,
  revoked_at           timestamptz,
  last_used_at         timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  created_by           text,
  CONSTRAINT api_keys_owner_type_not_empty CHECK (owner_type <> ''),
  CONSTRAINT api_keys_owner_id_not_empty CHECK (owner_id <> ''),
  CONSTRAINT api_keys_name_not_empty CHECK (name <> ''),
  CONSTRAINT api_keys_key_hash_length CHECK (length(key_hash) = 32),
  CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit > 0),
  CONSTRAINT api_keys_window_seconds_positive CHECK (window_seconds > 0),
  CONSTRAINT api_keys_rate_limit_with_window
    CHECK ((rate_limit IS NULL) = (window_seconds IS NULL)),
  CONSTRAINT api_keys_quota_not_negative CHECK (quota >= 0),
  CONSTRAINT api_keys_quota_period_positive CHECK (quota_period_seconds > 0),
  CONSTRAINT api_keys_expires_after_creation CHECK (expires_at > created_at)
);

-- Lookup by hash is the UNIQUE index above; this one serves `keys list --owner`.
CREATE INDEX api_keys_owner_idx ON api_keys (owner_type, owner_id, created_at);

CREATE FUNCTION api_keys_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER api_keys_updated_at BEFORE UPDATE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_keys_touch_updated_at();

-- Every running keygate LISTENs here and drops its cached copy of the key at once, whoever
-- changed the row (keygate, psql, an admin tool).
CREATE FUNCTION api_keys_notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('keygate_key_changed', encode(OLD.key_hash, 'hex'));
  RETURN NULL;
END
$$;

-- Only changes to what the request path decides on: last_used_at updates (the usage writer's
-- steady trickle) must not flush caches.
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
  FOR EACH ROW
  WHEN ((OLD.key_hash, OLD.owner_type, OLD.owner_id, OLD.name, OLD.scopes, OLD.allowed_ips,
         OLD.rate_limit, OLD.window_seconds, OLD.quota, OLD.quota_period_seconds, OLD.is_active,
         OLD.expires_at, OLD.revoked_at)
        IS DISTINCT FROM
        (NEW.key_hash, NEW.owner_type, NEW.owner_id, NEW.name, NEW.scopes, NEW.allowed_ips,
         NEW.rate_limit, NEW.window_seconds, NEW.quota, NEW.quota_period_seconds, NEW.is_active,
         NEW.expires_at, NEW.revoked_at))
  EXECUTE FUNCTION api_keys_notify_changed();

CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_keys_notify_changed();

CREATE TABLE api_key_usage (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  api_key_id       uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  endpoint         text,
  method           text,
  status_code      integer,
  ip_address       inet,
  user_agent       text,
  response_time_ms integer,
  created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_key_usage_key_created_idx ON api_key_usage (api_key_id, created_at);
CREATE INDEX api_key_usage_created_idx ON api_key_usage (created_at);

-- Quotas outlive Redis: the used count of each key's current quota period (api_keys.quota,
-- refilled every api_keys.quota_period_seconds when set). Redis holds the live count; keygate
-- writes it here about once a second (store/quota_ledger.hpp) and starts from it when Redis
-- has lost it. A table of its own, not columns of api_keys: these writes then neither touch
-- api_keys.updated_at nor contend with the row the request path reads and operators edit.

CREATE TABLE api_key_quota_usage (
  api_key_id   uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
  period_start timestamptz NOT NULL,  -- start of the counted period; the epoch for a quota that never refills
  used         bigint NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT api_key_quota_usage_used_not_negative CHECK (used >= 0)
);

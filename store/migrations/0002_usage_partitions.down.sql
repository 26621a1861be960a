-- Back to 0001's plain api_key_usage, keeping the rows (event_id and response_time_us go).

ALTER TABLE api_key_usage RENAME TO api_key_usage_partitioned;
ALTER SEQUENCE api_key_usage_id_seq RENAME TO api_key_usage_partitioned_id_seq;
ALTER INDEX api_key_usage_pkey RENAME TO api_key_usage_partitioned_pkey;
ALTER INDEX api_key_usage_key_created_idx RENAME TO api_key_usage_partitioned_key_created_idx;
-- (its partitions' copies of the FK hold the name the new table's FK must get)
ALTER TABLE api_key_usage_partitioned DROP CONSTRAINT api_key_usage_api_key_id_fkey;

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

INSERT INTO api_key_usage (id, api_key_id, endpoint, method, status_code, ip_address, user_agent,
                           response_time_ms, created_at)
  OVERRIDING SYSTEM VALUE
  SELECT id, api_key_id, endpoint, method, status_code, ip_address, user_agent,
         response_time_ms, created_at
  FROM api_key_usage_partitioned;

SELECT setval('api_key_usage_id_seq', max(id)) FROM api_key_usage HAVING max(id) IS NOT NULL;

DROP TABLE api_key_usage_partitioned;

CREATE INDEX api_key_usage_key_created_idx ON api_key_usage (api_key_id, created_at);
CREATE INDEX api_key_usage_created_idx ON api_key_usage (created_at);

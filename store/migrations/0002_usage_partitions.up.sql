-- api_key_usage becomes a table partitioned by UTC day (native range partitioning on
-- created_at), keeping its rows. keygate's usage writer creates the partitions ahead and drops
-- those past usage.retention_days, at start and every day; this migration creates the ones the
-- existing rows need and today's week.
--
-- New columns: event_id (set by the writer: one id per request, UNIQUE per partition together
-- with created_at, so a batch written twice adds no row twice) and response_time_us (the
-- response time in microseconds; response_time_ms stays, rounded, for readers of seed 003's
-- schema). The old plain index on created_at goes: partition pruning does its work.

ALTER TABLE api_key_usage RENAME TO api_key_usage_unpartitioned;
ALTER SEQUENCE api_key_usage_id_seq RENAME TO api_key_usage_unpartitioned_id_seq;
ALTER INDEX api_key_usage_pkey RENAME TO api_key_usage_unpartitioned_pkey;
ALTER INDEX api_key_usage_key_created_idx RENAME TO api_key_usage_unpartitioned_key_created_idx;
ALTER INDEX api_key_usage_created_idx RENAME TO api_key_usage_unpartitioned_created_idx;

CREATE TABLE api_key_usage (
  id               bigint GENERATED ALWAYS AS IDENTITY,
  api_key_id       uuid NOT NULL,
  endpoint         text,
  method           text,
  status_code      integer,
  ip_address       inet,
  user_agent       text,
  response_time_ms integer,
  created_at       timestamptz NOT NULL DEFAULT now(),
  event_id         uuid NOT NULL DEFAULT gen_random_uuid(),
  response_time_us integer
) PARTITION BY RANGE (created_at);

DO $$
DECLARE
  day date;
BEGIN
  FOR day IN
    SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM api_key_usage_unpartitioned
    UNION
    SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 1,
                           (now() AT TIME ZONE 'UTC')::date + 7, interval '1 day')::date
    ORDER BY 1
  LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF api_key_usage FOR VALUES FROM (%L) TO (%L)',
                   'api_key_usage_p' || to_char(day, 'YYYYMMDD'),
                   to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
                   to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
  END LOOP;
END
$$;

INSERT INTO api_key_usage (id, api_key_id, endpoint, method, status_code, ip_address, user_agent,
                           response_time_ms, created_at, response_time_us)
  OVERRIDING SYSTEM VALUE
  SELECT id, api_key_id, endpoint, method, status_code, ip_address, user_agent,
         response_time_ms, created_at, response_time_ms * 1000
  FROM api_key_usage_unpartitioned;

SELECT setval('api_key_usage_id_seq', max(id)) FROM api_key_usage HAVING max(id) IS NOT NULL;

DROP TABLE api_key_usage_unpartitioned;

ALTER TABLE api_key_usage
  ADD CONSTRAINT api_key_usage_pkey PRIMARY KEY (id, created_at),
  ADD CONSTRAINT api_key_usage_event_id_key UNIQUE (event_id, created_at),
  ADD CONSTRAINT api_key_usage_api_key_id_fkey
    FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE CASCADE;

CREATE INDEX api_key_usage_key_created_idx ON api_key_usage (api_key_id, created_at);

-- wrk script for keygate's benchmark: rotates API keys through a request header.
--
-- Environment:
--   BENCH_KEYS    file with one key per line (required); every request uses the next one
--   BENCH_HEADER  "authorization" (default: "Authorization: Bearer KEY") or another header name
--                 (the key as its value, e.g. x-api-key)
--   BENCH_PATH    request path (default /bench)
--   BENCH_STOP_AFTER  if set, each wrk thread stops after this many responses (used to touch
--                 every key of a list once, e.g. to fill keygate's cache)
-- The requests are formatted once in init(), so the load generator's cost per request is the
-- same for every scenario (direct and nginx send the same header; they just ignore it).
-- done() prints one line "BENCH_RESULT {json}" with the counters and the latency percentiles
-- (microseconds), p99.9 included.

local keys_file = os.getenv("BENCH_KEYS")
local header = os.getenv("BENCH_HEADER") or "authorization"
local path = os.getenv("BENCH_PATH") or "/bench"
local reqs = {}
local n, i = 0, 0

function setup(thread)
  thread:set("thread_index", (thread_count or 0))
  thread_count = (thread_count or 0) + 1
end

function init(args)
  local f = assert(io.open(assert(keys_file, "BENCH_KEYS is not set"), "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      local headers = {}
      if header:lower() == "authorization" then
        headers["Authorization"] = "Bearer " .. line
      else
        headers[header] = line
      end
      reqs[n] = wrk.format("GET", path, headers)
    end
  end
  f:close()
  assert(n > 0, "no keys in " .. keys_file)
  -- threads start at different places in the list
  i = ((thread_index or 0) * 7919) % n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "")
if stop_after then
  local seen = 0
  function response(status, headers, body)
    seen = seen + 1
    if seen >= stop_after then wrk.thread:stop() end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "stdev": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end

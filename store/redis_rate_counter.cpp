#include "store/redis_rate_counter.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "store/metrics.hpp"
#include "store/quota_ledger.hpp"
#include "store/redis_cluster_slots.hpp"
#include "store/redis_commands.hpp"

namespace keygate::store {
namespace {

// KEYS[1] the counter's buckets (hash), KEYS[2] the quota's used count (only with a quota).
// ARGV: 1 limit L, 2 bucket B (ticks), 3 now t (ticks), 4 buckets N, 5 expiry of the hash (ms),
//       6 lease: requests wanted at most, 7 bucket index and 8 count of unused lease requests
//       to give back (0: none), and with a quota: 9 quota Q, 10 the count to start from when
//       KEYS[2] is missing (-1: not loaded yet), 11 expiry of KEYS[2] (ms, 0: none).
// Returns, allowed: {1, used, granted, p, c} (after counting); otherwise
// {status, used, 0, count of bucket j-N, ..., count of bucket j}: status 0 rate limited,
// 2 quota used up, 3 quota count missing (load it and call again).
// The window and lease arithmetic is authz/sliding_window.hpp's, term for term.
constexpr std::string_view sliding_window_lua = R"lua(
local limit = tonumber(ARGV[1])
local bucket = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local j = math.floor(now / bucket)
local e = now - j * bucket
local first = j - n
local counts = {}
for i = 1, n + 1 do counts[i] = 0 end
local stale = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local index = tonumber(fields[i])
  if index == nil or index < first then
    stale[#stale + 1] = fields[i]
  elseif index <= j then
    counts[index - first + 1] = math.max(0, tonumber(fields[i + 1]) or 0)
  end
end
local back = tonumber(ARGV[8])
if back > 0 then
  local index = tonumber(ARGV[7])
  if index >= first and index <= j then
    local slot = index - first + 1
    back = math.min(back, counts[slot])
    if back > 0 then
      counts[slot] = redis.call('HINCRBY', KEYS[1], string.format('%d', index), -back)
    end
  end
end
local used = -1
if #KEYS > 1 then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    used = tonumber(stored) or 0
  else
    used = tonumber(ARGV[10])
    if used < 0 then return {3, -1, 0, unpack(counts)} end
  end
  if used >= tonumber(ARGV[9]) then return {2, used, 0, unpack(counts)} end
end
local previous = math.min(counts[1], limit)
local current = 0
for i = 2, n + 1 do current = current + counts[i] end
current = math.min(current, limit)
local slack = limit * bucket - previous * (bucket - e) - current * bucket
if slack < bucket then return {0, used, 0, unpack(counts)} end
local granted = math.max(1, math.min(tonumber(ARGV[6]), math.floor(math.floor(slack / bucket) / 16)))
counts[n + 1] = redis.call('HINCRBY', KEYS[1], string.format('%d', j), granted)
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if #KEYS > 1 then
  used = used + granted
  if tonumber(ARGV[11]) > 0 then
    redis.call('SET', KEYS[2], string.format('%d', used), 'PX', ARGV[11])
  else
    redis.call('SET', KEYS[2], string.format('%d', used))
  end
end
current = 0
for i = 2, n + 1 do current = current + counts[i] end
return {1, used, granted, counts[1], current}
)lua";

bool integer_at(const RedisReply& reply, std::size_t i, std::int64_t& out) {
  if (reply.elements.size() <= i || reply.elements[i].kind != RedisReply::Kind::integer) {
    return false;
  }
  out = reply.elements[i].integer;
  return true;
}

// A bucket's count as the script keeps it: never negative, and far below what a sum of a
// window's buckets could overflow with (the limits are int).
bool count_at(const RedisReply& reply, std::size_t i, std::int64_t& out) {
  constexpr std::int64_t most = std::int64_t{1} << 40;
  return integer_at(reply, i, out) && out >= 0 && out <= most;
}

}  // namespace

WindowScriptReply parse_window_script_reply(const RedisResult& redis, std::int64_t buckets) {
  WindowScriptReply out;
  if (!redis.ok() || redis.reply.kind != RedisReply::Kind::array) return out;
  const std::size_t size = redis.reply.elements.size();
  std::int64_t status = 0;
  if (!integer_at(redis.reply, 0, status) || status < 0 || status > 3 ||
      !integer_at(redis.reply, 1, out.result.quota_used) ||
      !count_at(redis.reply, 2, out.result.granted)) {
    return out;
  }
  WindowHitResult& r = out.result;
  if (status == static_cast<int>(ScriptStatus::allowed)) {
    if (size != 5 || r.granted < 1 || !count_at(redis.reply, 3, r.previous) ||
        !count_at(redis.reply, 4, r.current)) {
      return out;
    }
  } else {
    if (size != static_cast<std::size_t>(buckets + 4)) return out;
    r.counts.resize(static_cast<std::size_t>(buckets + 1));
    for (std::size_t i = 0; i < r.counts.size(); ++i) {
      if (!count_at(redis.reply, i + 3, r.counts[i])) return out;
    }
    r.previous = r.counts.front();
    r.current = 0;
    for (std::size_t i = 1; i < r.counts.size(); ++i) r.current += r.counts[i];
  }
  out.status = static_cast<ScriptStatus>(status);
  out.ok = true;
  return out;
}

std::string quota_key_name(std::string_view counter, std::int64_t period_start_s) {
  std::string name = "kg:q:{";
  name += hash_tag_of(counter);
  name += "}:" + std::to_string(period_start_s);
  return name;
}

const RedisScript& RedisRateCounter::sliding_window_script() {
  static const RedisScript script{std::string(sliding_window_lua)};
  return script;
}

RedisRateCounter::RedisRateCounter(RedisCommands& redis, QuotaLedger* ledger)
    : redis_(redis), ledger_(ledger) {}

bool RedisRateCounter::available() const { return redis_.connected(); }

boost::asio::awaitable<WindowHitResult> RedisRateCounter::hit(const WindowHit& request) {
  const std::int64_t index = request.now_ticks / request.bucket_ticks;
  // The current bucket is read until it leaves the window, at (index + N + 1) * B; one second
  // of slack covers clock skew between replicas.
  const std::int64_t expire_ms =
      ((index + request.buckets + 1) * request.bucket_ticks - request.now_ticks) * request.tick_ms + 1000;
  const std::string counter(request.counter);
  const std::string limit = std::to_string(request.limit);
  const std::string bucket = std::to_string(request.bucket_ticks);
  const std::string now = std::to_string(request.now_ticks);
  const std::string buckets = std::to_string(request.buckets);
  const std::string expire = std::to_string(expire_ms);
  // Keys with a quota take one request per call (a lease would count against the quota too).
  const std::string want = std::to_string(request.quota == nullptr ? std::max<std::int64_t>(request.want, 1) : 1);
  const std::string back_index = std::to_string(request.give_back_index);
  const std::string back = std::to_string(std::max<std::int64_t>(request.give_back, 0));

  WindowHitResult out;
  if (request.quota == nullptr) {
    const std::array<std::string_view, 1> keys{counter};
    const std::array<std::string_view, 8> args{limit, bucket, now, buckets, expire, want, back_index, back};
    metrics().ratelimit_redis_calls.fetch_add(1, std::memory_order_relaxed);
    const RedisResult result = co_await redis_.eval_script(sliding_window_script(), keys, args);
    WindowScriptReply reply = parse_window_script_reply(result, request.buckets);
    if (!reply.ok || reply.status == ScriptStatus::quota_missing) co_return out;
    out = std::move(reply.result);
    out.status = WindowHitResult::Status::ok;
    out.verdict = reply.status == ScriptStatus::allowed ? WindowHitResult::Verdict::allowed
                                                        : WindowHitResult::Verdict::rate_limited;
    co_return out;
  }

  const QuotaHit& quota = *request.quota;
  const std::string key_id(quota.key_id);
  const std::string quota_key = quota_key_name(request.counter, quota.period_start_s);
  const std::string quota_limit = std::to_string(quota.quota);
  const std::string quota_expire = std::to_string(quota.expire_ms);
  const std::array<std::string_view, 2> keys{counter, quota_key};
  std::string start_from = "-1";
  WindowScriptReply reply;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::array<std::string_view, 11> args{limit, bucket, now, buckets, expire, want, back_index,
                                                back, quota_limit, start_from, quota_expire};
    metrics().ratelimit_redis_calls.fetch_add(1, std::memory_order_relaxed);
    const RedisResult result = co_await redis_.eval_script(sliding_window_script(), keys, args);
    reply = parse_window_script_reply(result, request.buckets);
    if (!reply.ok) co_return out;
    if (reply.status != ScriptStatus::quota_missing) break;
    if (attempt == 1) break;
    // Not in Redis (first use, or Redis lost it): start from what PostgreSQL kept.
    std::optional<std::int64_t> persisted = 0;
    if (ledger_ != nullptr) persisted = co_await ledger_->load(key_id, quota.period_start_s);
    if (!persisted) {
      out.status = WindowHitResult::Status::quota_unavailable;
      co_return out;
    }
    start_from = std::to_string(*persisted);
  }
  if (reply.status == ScriptStatus::quota_missing) {
    out.status = WindowHitResult::Status::quota_unavailable;
    co_return out;
  }
  out = std::move(reply.result);
  out.status = WindowHitResult::Status::ok;
  switch (reply.status) {
    case ScriptStatus::allowed: out.verdict = WindowHitResult::Verdict::allowed; break;
    case ScriptStatus::quota_exceeded: out.verdict = WindowHitResult::Verdict::quota_exceeded; break;
    default: out.verdict = WindowHitResult::Verdict::rate_limited; break;
  }
  if (ledger_ != nullptr && out.quota_used >= 0) {
    ledger_->note(key_id, quota.period_start_s, out.quota_used);
  }
  co_return out;
}

}  // namespace keygate::store

#include "store/redis_rate_counter.hpp"

#include <array>
#include <string>

#include "store/metrics.hpp"
#include "store/redis_client.hpp"

namespace keygate::store {
namespace {

// KEYS[1] previous window, KEYS[2] current window.
// ARGV: limit L, window W (ticks), now t (ticks), expiry of the current key (ms).
// Returns {allowed 0|1, p, c after}. The arithmetic is authz/sliding_window.hpp's, term for term.
constexpr std::string_view sliding_window_lua = R"lua(
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3]) % window
local counts = redis.call('MGET', KEYS[1], KEYS[2])
local previous = math.max(0, math.min(tonumber(counts[1] or '0') or 0, limit))
local current = math.max(0, math.min(tonumber(counts[2] or '0') or 0, limit))
if previous * (window - elapsed) + (current + 1) * window <= limit * window then
  current = math.min(redis.call('INCR', KEYS[2]), limit)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return {1, previous, current}
end
return {0, previous, current}
)lua";

bool integer_at(const RedisReply& reply, std::size_t i, std::int64_t& out) {
  if (reply.elements.size() <= i || reply.elements[i].kind != RedisReply::Kind::integer) {
    return false;
  }
  out = reply.elements[i].integer;
  return true;
}

}  // namespace

const RedisScript& RedisRateCounter::sliding_window_script() {
  static const RedisScript script{std::string(sliding_window_lua)};
  return script;
}

RedisRateCounter::RedisRateCounter(RedisClient& redis) : redis_(redis) {}

bool RedisRateCounter::available() const { return redis_.connected(); }

boost::asio::awaitable<WindowHitResult> RedisRateCounter::hit(const WindowHit& request) {
  const std::int64_t index = request.now_ticks / request.window_ticks;
  const std::string previous_key = std::string(request.counter) + ':' + std::to_string(index - 1);
  const std::string current_key = std::string(request.counter) + ':' + std::to_string(index);
  // The current window's key is read until its successor ends, at (index + 2) * W; one second
  // of slack covers clock skew between replicas.
  const std::int64_t expire_ms =
      ((index + 2) * request.window_ticks - request.now_ticks) * request.tick_ms + 1000;
  const std::string limit = std::to_string(request.limit);
  const std::string window = std::to_string(request.window_ticks);
  const std::string now = std::to_string(request.now_ticks);
  const std::string expire = std::to_string(expire_ms);
  const std::array<std::string_view, 2> keys{previous_key, current_key};
  const std::array<std::string_view, 4> args{limit, window, now, expire};

  metrics().ratelimit_redis_calls.fetch_add(1, std::memory_order_relaxed);
  const RedisResult result = co_await redis_.eval_script(sliding_window_script(), keys, args);

  WindowHitResult out;
  if (!result.ok() || result.reply.kind != RedisReply::Kind::array) co_return out;
  std::int64_t allowed = 0;
  if (!integer_at(result.reply, 0, allowed) || !integer_at(result.reply, 1, out.previous) ||
      !integer_at(result.reply, 2, out.current)) {
    co_return out;
  }
  out.allowed = allowed == 1;
  out.status = WindowHitResult::Status::ok;
  co_return out;
}

}  // namespace keygate::store

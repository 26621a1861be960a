#pragma once
// The rate-limit step of the data path: which limit applies to a request, and whether this
// request fits in it. One RateLimiter per worker thread (not thread-safe).
//
// Order of a check:
//   1. policy: the matched route's rate_limit, else the key's (rate_limit, window_seconds),
//      else the configured default (`choose_policy`).
//   2. over-limit near cache: a counter known to be over its limit is answered 429 locally,
//      with no Redis call, until the moment the sliding window can allow a request again.
//   3. the shared counter (one Lua script through store::RateCounter, i.e. Redis).
//   4. Redis unavailable (no connection, timeout, error reply): on_redis_error decides —
//      local (per-process windows with the limit divided by `replicas`), deny, or allow — and
//      the request counts in store::metrics().ratelimit_decided_without_redis. After a failure
//      Redis is skipped for `redis_retry_interval`; the first request after it tries again,
//      and the limiter is back on Redis as soon as a call succeeds.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "authz/authorizer.hpp"
#include "authz/duration.hpp"
#include "authz/routes.hpp"
#include "authz/sliding_window.hpp"
#include "store/key_record.hpp"

namespace keygate::store {
class RateCounter;
}

namespace keygate::authz {

enum class OnRedisError { local, deny, allow };
// "local" | "deny" | "allow"; anything else: nullopt.
std::optional<OnRedisError> parse_on_redis_error(std::string_view text);

struct RateLimiterOptions {
  RateLimitSpec default_limit{100, 60};
  OnRedisError on_redis_error = OnRedisError::local;
  unsigned replicas = 1;  // local fallback: each process allows limit / replicas (at least 1)
  std::chrono::milliseconds redis_retry_interval{1000};
};

struct RateLimitPolicy {
  long long limit = 0;
  int window_seconds = 0;
  enum class Source { route, key, default_limit } source = Source::default_limit;
  friend bool operator==(const RateLimitPolicy&, const RateLimitPolicy&) = default;
};

// Route's limit, else the key's (a key's rate_limit without window_seconds uses the default
// window; non-positive values count as unset), else the default.
RateLimitPolicy choose_policy(const store::KeyRecord& key, const Route* route,
                              const RateLimitSpec& default_limit);

// The counter a request is counted in: "kg:rl:{<key id>}:<window>s", or, for a route's own
// limit, "kg:rl:{<key id>}:r<hash of the route's pattern and methods>:<window>s". The window is
// in the name so that a changed window starts fresh counters.
std::string counter_name(const store::KeyRecord& key, const Route* route,
                         const RateLimitPolicy& policy);

enum class RateVerdict {
  allowed,
  rate_limited,    // 429 rate_limited, with Retry-After
  quota_exceeded,  // 429 quota_exceeded (quotas: not implemented yet)
  unavailable,     // Redis down and on_redis_error: deny -> 503 store_unavailable
};

struct RateOutcome {
  RateVerdict verdict = RateVerdict::allowed;
  RateLimitStatus status;  // RateLimit-* headers; applies is always true
  enum class Source { redis, near_cache, without_redis } source = Source::redis;
};

class RateLimiter {
 public:
  using Now = std::function<store::TimePoint()>;

  // `counter` null: no Redis configured; every request is decided as if Redis were down.
  RateLimiter(RateLimiterOptions options, store::RateCounter* counter,
              Now now = [] { return store::Clock::now(); });

  boost::asio::awaitable<RateOutcome> check(const store::KeyRecord& key, const Route* route);

  std::size_t near_cache_size() const { return near_cache_.size(); }

 private:
  struct Blocked {
    std::int64_t until_ms = 0;  // first instant a request may be allowed again
    std::int64_t reset_at_ms = 0;
  };

  RateOutcome without_redis(const std::string& counter, const RateLimitPolicy& policy,
                            std::int64_t now_ms);
  void remember_blocked(const std::string& counter, const WindowDecision& d, std::int64_t now_ms);

  RateLimiterOptions options_;
  store::RateCounter* counter_;
  Now now_;
  LocalSlidingWindows local_;
  std::unordered_map<std::string, Blocked> near_cache_;
  std::size_t near_cache_prune_at_ = 1024;
  std::int64_t skip_redis_until_ms_ = 0;
};

}  // namespace keygate::authz

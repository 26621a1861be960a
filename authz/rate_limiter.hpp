#pragma once
// The rate-limit step of the data path: which limit applies to a request, and whether this
// request fits in it. One RateLimiter per worker thread (not thread-safe).
//
// Order of a check:
//   1. policy: the matched route's rate_limit, else the key's (rate_limit, window_seconds),
//      else the configured default (`choose_policy`); and the key's quota, if it has one.
//   2. near cache: a counter known to be over its limit (or a key whose quota is used up) is
//      answered 429 locally, with no Redis call, until the moment the sliding window can allow
//      a request again (for a quota: the end of its period, re-checked at least every second so
//      a raised quota takes effect).
//   3. the worker's lease on the counter, if it holds one for the current bucket: admitted with
//      no Redis call (authz/sliding_window.hpp, LEASES; `lease` requests at most per call).
//   4. the shared counter (one Lua script through store::RateCounter, i.e. Redis): window and
//      quota decided and counted together (store/redis_rate_counter.hpp); it may grant a lease.
//   5. Redis unavailable (no connection, timeout, error reply): on_redis_error decides —
//      local (per-process windows with the limit divided by `replicas`; a quota continues from
//      the last count Redis reported to this worker, or from 0 if it never did), or error (a
//      store error, answered by the authorizer's on_store_error) — and the request counts in store::metrics().ratelimit_decided_without_redis.
//      After a failure Redis is skipped for `redis_retry_interval`; the first request after it
//      tries again, and the limiter is back on Redis as soon as a call succeeds. A quota whose
//      count is in neither Redis nor PostgreSQL is decided the same way, for that request only.
//
// RateLimit-* headers describe the window, unless the key's quota is closer to exhaustion:
// then Remaining is what is left of the quota (and for a refilling quota, Limit is the quota
// and Reset the end of its period). Answers refused before the rate-limit step (expired,
// revoked, 403) consulted no limit and carry no RateLimit-* headers.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "authz/authorizer.hpp"
#include "core/duration.hpp"
#include "authz/rate_policy.hpp"
#include "authz/routes.hpp"
#include "authz/sliding_window.hpp"
#include "store/key_record.hpp"

namespace keygate::store {
class RateCounter;
struct WindowHit;
struct WindowHitResult;
}

namespace keygate::authz {

// What a rate-limit check does when Redis cannot be reached (config: rate_limit.on_redis_error).
enum class OnRedisError {
  local,  // per-process windows, each with the limit divided by `replicas` (the default)
  error,  // a store error: the authorizer's on_store_error decides (closed: 503, open: pass)
};

struct RateLimiterOptions {
  core::RateLimitSpec default_limit{100, 60};
  OnRedisError on_redis_error = OnRedisError::local;
  unsigned replicas = 1;  // local fallback: each process allows limit / replicas (at least 1)
  std::chrono::milliseconds redis_retry_interval{1000};
  // Requests one Redis call may count at most (a lease); 1: every request is one call.
  std::int64_t lease = 1;
  // Before the key id in counter names: empty for keygate's api_keys (uuids),
  // "c:<table>@<database hash>:" for a custom table, whose ids are only unique in that table.
  std::string key_namespace;
};

enum class RateVerdict {
  allowed,
  rate_limited,    // 429 rate_limited, with Retry-After
  quota_exceeded,  // 429 quota_exceeded
  unavailable,     // Redis down and on_redis_error: error -> a store error (on_store_error)
};

struct RateOutcome {
  RateVerdict verdict = RateVerdict::allowed;
  RateLimitStatus status;  // RateLimit-* headers; applies unless the verdict is unavailable
  enum class Source { redis, near_cache, without_redis } source = Source::redis;
  long long quota_used = -1;  // after this request, as far as known; -1: no quota or unknown
};

class RateLimiter {
 public:
  using Now = std::function<store::TimePoint()>;

  // `counter` null: no Redis configured; every request is decided as if Redis were down.
  RateLimiter(RateLimiterOptions options, store::RateCounter* counter,
              Now now = [] { return store::Clock::now(); });

  boost::asio::awaitable<RateOutcome> check(const store::KeyRecord& key, const Route* route);

  std::size_t near_cache_size() const { return near_cache_.size(); }
  std::size_t counters_size() const { return counters_.size(); }

 private:
  struct Blocked {
    std::int64_t until_ms = 0;  // first instant a request may be allowed again
    std::int64_t reset_at_ms = 0;
    RateVerdict verdict = RateVerdict::rate_limited;
  };
  struct QuotaPeriod;  // the key's quota at one instant (rate_limiter.cpp)
  struct Check;        // what one check is about (rate_limiter.cpp)
  struct QuotaCount {
    std::int64_t period_start_s = 0;
    std::int64_t used = 0;
  };
  // What this worker knows of one shared counter: the last p and c Redis reported (for lease
  // answers' headers; admitted lease requests are added to c as they are used)
  // and its lease. Kept small: there is one per counter seen, e.g. 100,000 for 100,000 keys,
  // so the map is keyed by a 64-bit hash of the counter's name, not the name (about 100 bytes
  // a counter less); `check`, a second hash, tells two names with the same key apart.
  struct CounterState {
    std::uint32_t check = 0;
    std::int64_t window_ms = 0;  // the policy's window; a different one starts afresh
    std::int64_t seen_index = 0;  // bucket index of the report
    std::int64_t previous = 0;
    std::int64_t current = 0;
    std::int64_t lease_index = 0;  // bucket the lease was counted in
    std::int64_t lease_left = 0;   // its requests not admitted yet
    std::int64_t give_back_index = 0;  // an expired lease's unused requests, returned by the
    std::int64_t give_back = 0;        // next call for this counter
  };

  // A counter name's two hashes, computed once per request: the map key and the check.
  struct CounterId {
    std::uint64_t key = 0;
    std::uint32_t check = 0;
    static CounterId of(const std::string& counter);
  };
  // The steps of check(), in order (see the top of this file).
  std::optional<RateOutcome> answer_from_near_cache(const Check& c);
  std::optional<RateOutcome> admit_from_lease(const Check& c);
  boost::asio::awaitable<RateOutcome> count_in_redis(const Check& c);
  bool ask_for_lease(const Check& c, store::WindowHit& hit);
  RateOutcome settle(const Check& c, const store::WindowHitResult& result, bool keep_state);

  // The state of the counter with `window`, or null; state_of creates (or resets) it.
  CounterState* find_state(const CounterId& id, const SlidingWindow& window);
  CounterState& state_of(const CounterId& id, const SlidingWindow& window);
  CounterState& record_seen(const CounterId& id, const SlidingWindow& window, std::int64_t now_ms,
                            std::int64_t previous, std::int64_t current);
  void prune_counters(std::int64_t now_ms);
  RateOutcome without_redis(const store::KeyRecord& key, const std::string& counter,
                            const CounterId& id,
                            const RateLimitPolicy& policy, std::int64_t now_ms);
  void remember_blocked(const std::string& name, Blocked blocked, std::int64_t now_ms);
  void remember_quota(const std::string& key_id, std::int64_t period_start_s, std::int64_t used);
  RateLimitStatus status_for(const store::KeyRecord& key, const RateLimitPolicy& policy,
                             const WindowDecision& d, long long quota_used, std::int64_t now_ms) const;

  RateLimiterOptions options_;
  store::RateCounter* counter_;
  Now now_;
  LocalSlidingWindows local_;  // the fallback's own counts
  std::unordered_map<std::uint64_t, CounterState> counters_;
  // Counters called once in their current bucket: (key, bucket index), direct-mapped; a
  // collision only means a counter's second call is taken for a first one (no lease yet).
  struct FirstCall {
    std::uint64_t key = 0;
    std::int64_t index = -1;
  };
  std::vector<FirstCall> first_calls_ = std::vector<FirstCall>(16384);
  std::size_t counters_prune_at_ = 1024;
  std::unordered_map<std::string, QuotaCount> quota_seen_;  // by key id
  std::unordered_map<std::string, Blocked> near_cache_;
  std::size_t near_cache_prune_at_ = 1024;
  std::int64_t skip_redis_until_ms_ = 0;
};

}  // namespace keygate::authz

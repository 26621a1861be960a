#include "authz/rate_limiter.hpp"

#include <algorithm>
#include <cstdio>

#include "store/metrics.hpp"
#include "store/redis_rate_counter.hpp"

namespace keygate::authz {
namespace {

std::int64_t to_ms(store::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

RateLimitStatus status_of(const RateLimitPolicy& policy, const WindowDecision& d) {
  RateLimitStatus s;
  s.applies = true;
  s.limit = policy.limit;
  s.remaining = std::min<long long>(d.remaining, policy.limit);
  s.reset_seconds = ceil_seconds(d.reset_ms);
  s.retry_after_seconds = d.allowed ? 0 : std::max<std::int64_t>(ceil_seconds(d.retry_after_ms), 1);
  return s;
}

// FNV-1a, 64 bits: stable across processes, so every replica names a route's counter alike.
std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::optional<OnRedisError> parse_on_redis_error(std::string_view text) {
  if (text == "local") return OnRedisError::local;
  if (text == "deny") return OnRedisError::deny;
  if (text == "allow") return OnRedisError::allow;
  return std::nullopt;
}

RateLimitPolicy choose_policy(const store::KeyRecord& key, const Route* route,
                              const RateLimitSpec& default_limit) {
  if (route != nullptr && route->rate_limit) {
    return {route->rate_limit->limit, route->rate_limit->window_seconds,
            RateLimitPolicy::Source::route};
  }
  if (key.rate_limit && *key.rate_limit > 0) {
    const int window = key.window_seconds && *key.window_seconds > 0 ? *key.window_seconds
                                                                     : default_limit.window_seconds;
    return {*key.rate_limit, window, RateLimitPolicy::Source::key};
  }
  return {default_limit.limit, default_limit.window_seconds, RateLimitPolicy::Source::default_limit};
}

std::string counter_name(const store::KeyRecord& key, const Route* route,
                         const RateLimitPolicy& policy) {
  std::string name = "kg:rl:{" + key.id + "}:";
  if (policy.source == RateLimitPolicy::Source::route && route != nullptr) {
    std::uint64_t h = fnv1a(14695981039346656037ull, route->pattern);
    for (const std::string& method : route->methods) h = fnv1a(fnv1a(h, " "), method);
    char hex[24];
    std::snprintf(hex, sizeof hex, "r%016llx:", static_cast<unsigned long long>(h));
    name += hex;
  }
  name += std::to_string(policy.window_seconds) + "s";
  return name;
}

RateLimiter::RateLimiter(RateLimiterOptions options, store::RateCounter* counter, Now now)
    : options_(options), counter_(counter), now_(std::move(now)) {
  options_.replicas = std::max(options_.replicas, 1u);
}

boost::asio::awaitable<RateOutcome> RateLimiter::check(const store::KeyRecord& key,
                                                       const Route* route) {
  const RateLimitPolicy policy = choose_policy(key, route, options_.default_limit);
  const std::string counter = counter_name(key, route, policy);
  const std::int64_t now_ms = to_ms(now_());

  // Over-limit near cache: known to be over, and the window cannot allow a request yet.
  if (auto it = near_cache_.find(counter); it != near_cache_.end()) {
    if (now_ms < it->second.until_ms) {
      store::metrics().ratelimit_near_cache_hits.fetch_add(1, std::memory_order_relaxed);
      WindowDecision d;
      d.allowed = false;
      d.retry_after_ms = it->second.until_ms - now_ms;
      d.reset_ms = std::max(it->second.reset_at_ms - now_ms, d.retry_after_ms);
      co_return RateOutcome{RateVerdict::rate_limited, status_of(policy, d),
                            RateOutcome::Source::near_cache};
    }
    near_cache_.erase(it);
  }

  if (counter_ == nullptr || now_ms < skip_redis_until_ms_ || !counter_->available()) {
    co_return without_redis(counter, policy, now_ms);
  }

  const SlidingWindow window = SlidingWindow::make(policy.limit, policy.window_seconds);
  store::WindowHit hit;
  hit.counter = counter;
  hit.limit = window.limit;
  hit.window_ticks = window.window_ticks;
  hit.now_ticks = window.ticks(now_ms);
  hit.tick_ms = window.tick_ms;
  const store::WindowHitResult result = co_await counter_->hit(hit);
  if (result.status != store::WindowHitResult::Status::ok) {
    skip_redis_until_ms_ = now_ms + options_.redis_retry_interval.count();
    co_return without_redis(counter, policy, now_ms);
  }
  skip_redis_until_ms_ = 0;

  const WindowDecision d =
      describe(window, result.allowed, {result.previous, result.current}, now_ms);
  if (!d.allowed) remember_blocked(counter, d, now_ms);
  co_return RateOutcome{d.allowed ? RateVerdict::allowed : RateVerdict::rate_limited,
                        status_of(policy, d), RateOutcome::Source::redis};
}

RateOutcome RateLimiter::without_redis(const std::string& counter, const RateLimitPolicy& policy,
                                       std::int64_t now_ms) {
  store::metrics().ratelimit_decided_without_redis.fetch_add(1, std::memory_order_relaxed);
  RateOutcome out;
  out.source = RateOutcome::Source::without_redis;
  switch (options_.on_redis_error) {
    case OnRedisError::local: {
      const long long share = std::max<long long>(policy.limit / options_.replicas, 1);
      const SlidingWindow window = SlidingWindow::make(share, policy.window_seconds);
      const WindowDecision d = local_.hit(counter, window, now_ms);
      out.verdict = d.allowed ? RateVerdict::allowed : RateVerdict::rate_limited;
      out.status = status_of(policy, d);
      break;
    }
    case OnRedisError::deny:
      out.verdict = RateVerdict::unavailable;
      out.status = {true, policy.limit, 0, 1, 1};
      break;
    case OnRedisError::allow:
      // Fail open: nothing is counted, so the full limit is reported.
      out.verdict = RateVerdict::allowed;
      out.status = {true, policy.limit, policy.limit, 0, 0};
      break;
  }
  return out;
}

void RateLimiter::remember_blocked(const std::string& counter, const WindowDecision& d,
                                   std::int64_t now_ms) {
  if (near_cache_.size() >= near_cache_prune_at_) {
    std::erase_if(near_cache_, [now_ms](const auto& item) { return item.second.until_ms <= now_ms; });
    near_cache_prune_at_ = std::max<std::size_t>(1024, 2 * near_cache_.size());
  }
  near_cache_[counter] = Blocked{now_ms + d.retry_after_ms, now_ms + d.reset_ms};
}

}  // namespace keygate::authz

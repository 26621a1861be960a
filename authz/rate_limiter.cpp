#include "authz/rate_limiter.hpp"

#include <algorithm>
#include <array>

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

}  // namespace

// The key's quota at `now_ms`: its period (epoch-aligned: a 86400 s period is the UTC day).
struct RateLimiter::QuotaPeriod {
  std::int64_t quota = 0;
  std::int64_t period_start_s = 0;  // 0: never refills
  std::int64_t period_end_ms = 0;   // 0: never refills

  static std::optional<QuotaPeriod> of(const store::KeyRecord& key, std::int64_t now_ms) {
    if (!key.quota) return std::nullopt;
    QuotaPeriod q;
    q.quota = std::max<std::int64_t>(*key.quota, 0);
    if (key.quota_period_seconds && *key.quota_period_seconds > 0) {
      const std::int64_t period = *key.quota_period_seconds;
      q.period_start_s = now_ms / 1000 / period * period;
      q.period_end_ms = (q.period_start_s + period) * 1000;
    }
    return q;
  }
};

namespace {

std::string quota_cache_name(const store::KeyRecord& key, std::int64_t quota) {
  return "kg:q:{" + key.id + "}:" + std::to_string(quota);
}

}  // namespace

RateLimiter::RateLimiter(RateLimiterOptions options, store::RateCounter* counter, Now now)
    : options_(options), counter_(counter), now_(std::move(now)) {
  options_.replicas = std::max(options_.replicas, 1u);
}

RateLimitStatus RateLimiter::status_for(const store::KeyRecord& key, const RateLimitPolicy& policy,
                                        const WindowDecision& d, long long quota_used,
                                        std::int64_t now_ms) const {
  RateLimitStatus s = status_of(policy, d);
  const auto quota = QuotaPeriod::of(key, now_ms);
  if (!quota || quota_used < 0) return s;
  const long long left = std::max<long long>(quota->quota - quota_used, 0);
  if (left >= s.remaining) return s;
  s.remaining = left;
  if (quota->period_end_ms > 0) {
    s.limit = quota->quota;
    s.reset_seconds = ceil_seconds(quota->period_end_ms - now_ms);
    if (left == 0) s.retry_after_seconds = s.reset_seconds;
  }
  return s;
}

// What one check is about, worked out once and read by every step.
struct RateLimiter::Check {
  Check(const store::KeyRecord& k, const Route* route, const RateLimiterOptions& options,
        std::int64_t now)
      : key(k),
        policy(choose_policy(k, route, options.default_limit)),
        counter(counter_name(k, route, policy, options.key_namespace)),
        now_ms(now),
        quota(QuotaPeriod::of(k, now)),
        quota_name(quota ? quota_cache_name(k, quota->quota) : std::string()),
        window(SlidingWindow::make(policy.limit, policy.window_seconds)),
        index(window.bucket_index(now)),
        id(CounterId::of(counter)) {}

  const store::KeyRecord& key;
  const RateLimitPolicy policy;
  const std::string counter;
  const std::int64_t now_ms;
  const std::optional<QuotaPeriod> quota;
  const std::string quota_name;  // empty: the key has no quota
  const SlidingWindow window;
  const std::int64_t index;  // the current bucket
  const CounterId id;
};

boost::asio::awaitable<RateOutcome> RateLimiter::check(const store::KeyRecord& key,
                                                       const Route* route) {
  const Check c(key, route, options_, to_ms(now_()));
  if (auto out = answer_from_near_cache(c)) co_return *out;
  if (auto out = admit_from_lease(c)) co_return *out;
  if (counter_ == nullptr || c.now_ms < skip_redis_until_ms_ || !counter_->available()) {
    co_return without_redis(c.key, c.counter, c.id, c.policy, c.now_ms);
  }
  co_return co_await count_in_redis(c);
}

// Step 2: known to be over, and the window (or quota) cannot allow a request yet.
std::optional<RateOutcome> RateLimiter::answer_from_near_cache(const Check& c) {
  const std::array<const std::string*, 2> names{&c.counter, &c.quota_name};
  for (const std::string* name : names) {
    if (name->empty()) continue;
    auto it = near_cache_.find(*name);
    if (it == near_cache_.end()) continue;
    if (c.now_ms >= it->second.until_ms) {
      near_cache_.erase(it);
      continue;
    }
    store::metrics().ratelimit_near_cache_hits.fetch_add(1, std::memory_order_relaxed);
    WindowDecision d;
    d.allowed = false;
    d.retry_after_ms = it->second.until_ms - c.now_ms;
    d.reset_ms = std::max(it->second.reset_at_ms - c.now_ms, d.retry_after_ms);
    RateOutcome out{it->second.verdict, status_of(c.policy, d), RateOutcome::Source::near_cache};
    if (it->second.verdict == RateVerdict::quota_exceeded) {
      out.quota_used = c.quota->quota;
      out.status = status_for(c.key, c.policy, d, out.quota_used, c.now_ms);
    }
    return out;
  }
  return std::nullopt;
}

// Step 3: requests already counted in this bucket by an earlier call, admitted with no call.
std::optional<RateOutcome> RateLimiter::admit_from_lease(const Check& c) {
  CounterState* state = find_state(c.id, c.window);
  if (state == nullptr || state->lease_left <= 0 || state->lease_index != c.index) {
    return std::nullopt;
  }
  --state->lease_left;
  if (state->seen_index == c.index) ++state->current;
  store::metrics().ratelimit_lease_hits.fetch_add(1, std::memory_order_relaxed);
  const WindowCounts counts =
      roll(WindowCounts::of(state->previous, state->current), state->seen_index, c.index);
  const WindowDecision d = describe(c.window, true, counts, c.now_ms);
  return RateOutcome{RateVerdict::allowed, status_for(c.key, c.policy, d, -1, c.now_ms),
                     RateOutcome::Source::redis};
}

// Step 4: one script call on the shared counter (and the quota), asking for a lease where
// this worker has called before in this bucket.
boost::asio::awaitable<RateOutcome> RateLimiter::count_in_redis(const Check& c) {
  store::QuotaHit quota_hit;
  store::WindowHit hit;
  hit.counter = c.counter;
  hit.limit = c.window.limit;
  hit.bucket_ticks = c.window.bucket_ticks;
  hit.buckets = SlidingWindow::buckets;
  hit.now_ticks = c.window.ticks(c.now_ms);
  hit.tick_ms = c.window.tick_ms;
  if (c.quota) {
    quota_hit.key_id = c.key.id;
    quota_hit.quota = c.quota->quota;
    quota_hit.period_start_s = c.quota->period_start_s;
    quota_hit.expire_ms = c.quota->period_end_ms > 0 ? c.quota->period_end_ms - c.now_ms + 60'000 : 0;
    hit.quota = &quota_hit;
  }
  const bool keep_state = ask_for_lease(c, hit);
  const store::WindowHitResult result = co_await counter_->hit(hit);
  // `counters_` may have changed while suspended: the steps below look the state up again.
  if (result.status == store::WindowHitResult::Status::unavailable) {
    skip_redis_until_ms_ = c.now_ms + options_.redis_retry_interval.count();
    co_return without_redis(c.key, c.counter, c.id, c.policy, c.now_ms);
  }
  skip_redis_until_ms_ = 0;
  if (result.status == store::WindowHitResult::Status::quota_unavailable) {
    co_return without_redis(c.key, c.counter, c.id, c.policy, c.now_ms);
  }
  co_return settle(c, result, keep_state);
}

// A counter this worker calls for the first time in this sub-window is remembered only in
// `first_calls_`; its second call there creates its state and asks for a lease. So a key seen
// once (most of them, with many keys) costs no memory here and holds no lease. True when the
// counter's state is to be kept after the call.
bool RateLimiter::ask_for_lease(const Check& c, store::WindowHit& hit) {
  FirstCall& first = first_calls_[c.id.key % first_calls_.size()];
  bool keep_state = first.key == c.id.key && first.index == c.index;
  if (CounterState* state = find_state(c.id, c.window)) {
    keep_state = true;
    // An expired lease's unused requests go back with this call (if it fails, they stay
    // counted: stricter, never looser).
    if (state->lease_left > 0 && state->lease_index != c.index) {
      state->give_back_index = state->lease_index;
      state->give_back = state->lease_left;
      state->lease_left = 0;
    }
    hit.want = state->seen_index == c.index ? options_.lease : 1;
    hit.give_back = state->give_back;
    hit.give_back_index = state->give_back_index;
    state->give_back = 0;
  } else if (keep_state) {
    hit.want = options_.lease;
  }
  first = FirstCall{c.id.key, c.index};
  return keep_state;
}

// Step 5: what Redis answered becomes this worker's view of the counter (its lease, the near
// cache) and the outcome with its headers.
RateOutcome RateLimiter::settle(const Check& c, const store::WindowHitResult& result,
                                bool keep_state) {
  // The counts as this worker sees them: a lease's unused requests are not admitted yet.
  const std::int64_t unused = result.allowed() ? std::max<std::int64_t>(result.granted - 1, 0) : 0;
  const std::int64_t current = result.current - unused;
  if (unused > 0) {
    CounterState& state = record_seen(c.id, c.window, c.now_ms, result.previous, current);
    if (state.lease_left > 0 && state.lease_index != c.index) {
      state.give_back_index = state.lease_index;  // a concurrent call's lease, now stale
      state.give_back = state.lease_left;
      state.lease_left = 0;
    }
    state.lease_index = c.index;
    state.lease_left += unused;  // merged with a lease a concurrent call got in this bucket
  } else if (keep_state) {
    record_seen(c.id, c.window, c.now_ms, result.previous, current);
  }
  if (c.quota && result.quota_used >= 0) {
    remember_quota(c.key.id, c.quota->period_start_s, result.quota_used);
  }

  WindowCounts counts = WindowCounts::of(result.previous, current);
  if (!result.allowed() && result.counts.size() == counts.at.size()) {
    std::copy(result.counts.begin(), result.counts.end(), counts.at.begin());
  }
  const WindowDecision d = describe(c.window, result.allowed(), counts, c.now_ms);
  RateOutcome out;
  out.source = RateOutcome::Source::redis;
  out.quota_used = result.quota_used;
  switch (result.verdict) {
    case store::WindowHitResult::Verdict::allowed:
      out.verdict = RateVerdict::allowed;
      break;
    case store::WindowHitResult::Verdict::rate_limited:
      out.verdict = RateVerdict::rate_limited;
      remember_blocked(c.counter, {c.now_ms + d.retry_after_ms, c.now_ms + d.reset_ms, out.verdict},
                       c.now_ms);
      break;
    case store::WindowHitResult::Verdict::quota_exceeded: {
      out.verdict = RateVerdict::quota_exceeded;
      // Until the period ends, but asked again every second: a raised quota applies soon.
      const std::int64_t until = c.quota->period_end_ms > 0
                                     ? std::min(c.quota->period_end_ms, c.now_ms + 1000)
                                     : c.now_ms + 1000;
      remember_blocked(c.quota_name, {until, until, out.verdict}, c.now_ms);
      break;
    }
  }
  out.status = status_for(c.key, c.policy, d, out.quota_used, c.now_ms);
  return out;
}

RateLimiter::CounterId RateLimiter::CounterId::of(const std::string& counter) {
  return {std::hash<std::string>{}(counter),
          static_cast<std::uint32_t>(fnv1a(fnv1a_basis, counter) >> 32)};
}

RateLimiter::CounterState* RateLimiter::find_state(const CounterId& id, const SlidingWindow& window) {
  const auto it = counters_.find(id.key);
  if (it == counters_.end() || it->second.window_ms != window.window_ms() ||
      it->second.check != id.check) {
    return nullptr;
  }
  return &it->second;
}

RateLimiter::CounterState& RateLimiter::state_of(const CounterId& id, const SlidingWindow& window) {
  auto [it, inserted] = counters_.try_emplace(id.key);
  // Another counter with the same key (or another window) is replaced: the state is only a
  // memory, and a lease lost this way stays counted in Redis (stricter, never looser).
  if (inserted || it->second.window_ms != window.window_ms() || it->second.check != id.check) {
    it->second = CounterState{};
    it->second.check = id.check;
    it->second.window_ms = window.window_ms();
  }
  return it->second;
}

RateLimiter::CounterState& RateLimiter::record_seen(const CounterId& id, const SlidingWindow& window,
                                                    std::int64_t now_ms, std::int64_t previous,
                                                    std::int64_t current) {
  if (counters_.size() >= counters_prune_at_) prune_counters(now_ms);
  CounterState& state = state_of(id, window);
  state.seen_index = window.bucket_index(now_ms);
  state.previous = previous;
  state.current = current;
  return state;
}

void RateLimiter::prune_counters(std::int64_t now_ms) {
  // A counter whose report has left the window and that holds nothing to give back is the
  // same as one never seen.
  std::erase_if(counters_, [now_ms](const auto& item) {
    const CounterState& state = item.second;
    const std::int64_t bucket_ms = state.window_ms / SlidingWindow::buckets;
    return bucket_ms > 0 && now_ms / bucket_ms > state.seen_index + SlidingWindow::buckets &&
           state.give_back == 0 && (state.lease_left == 0 || now_ms / bucket_ms != state.lease_index);
  });
  counters_prune_at_ = std::max<std::size_t>(1024, 2 * counters_.size());
}

RateOutcome RateLimiter::without_redis(const store::KeyRecord& key, const std::string& counter,
                                       const CounterId& id, const RateLimitPolicy& policy,
                                       std::int64_t now_ms) {
  store::metrics().ratelimit_decided_without_redis.fetch_add(1, std::memory_order_relaxed);
  RateOutcome out;
  out.source = RateOutcome::Source::without_redis;
  switch (options_.on_redis_error) {
    case OnRedisError::local: {
      const long long share = std::max<long long>(policy.limit / options_.replicas, 1);
      const SlidingWindow window = SlidingWindow::make(share, policy.window_seconds);
      const auto quota = QuotaPeriod::of(key, now_ms);
      QuotaCount* count = nullptr;
      if (quota) {
        auto [it, inserted] = quota_seen_.try_emplace(key.id, QuotaCount{quota->period_start_s, 0});
        if (it->second.period_start_s != quota->period_start_s) it->second = {quota->period_start_s, 0};
        count = &it->second;
        if (count->used >= quota->quota) {
          out.verdict = RateVerdict::quota_exceeded;
          out.quota_used = count->used;
          WindowDecision d = describe(window, false, local_.peek(counter, window, now_ms), now_ms);
          out.status = status_for(key, policy, d, out.quota_used, now_ms);
          break;
        }
      }
      const WindowDecision d = local_.hit(counter, window, now_ms);
      record_seen(id, window, now_ms, d.counts.previous(), d.counts.current());
      out.verdict = d.allowed ? RateVerdict::allowed : RateVerdict::rate_limited;
      if (count != nullptr) {
        if (d.allowed) ++count->used;
        out.quota_used = count->used;
      }
      out.status = status_for(key, policy, d, out.quota_used, now_ms);
      break;
    }
    case OnRedisError::error:
      // A store error (the authorizer's on_store_error answers it). Nothing was counted and
      // nothing is known of the window, so no RateLimit-* headers: only Retry-After.
      out.verdict = RateVerdict::unavailable;
      out.status = {false, 0, 0, 0, 1};
      break;
  }
  return out;
}

void RateLimiter::remember_blocked(const std::string& name, Blocked blocked, std::int64_t now_ms) {
  if (near_cache_.size() >= near_cache_prune_at_) {
    std::erase_if(near_cache_, [now_ms](const auto& item) { return item.second.until_ms <= now_ms; });
    near_cache_prune_at_ = std::max<std::size_t>(1024, 2 * near_cache_.size());
  }
  near_cache_[name] = blocked;
}

void RateLimiter::remember_quota(const std::string& key_id, std::int64_t period_start_s,
                                 std::int64_t used) {
  if (quota_seen_.size() >= 100'000 && !quota_seen_.contains(key_id)) quota_seen_.clear();
  quota_seen_[key_id] = QuotaCount{period_start_s, used};
}

}  // namespace keygate::authz

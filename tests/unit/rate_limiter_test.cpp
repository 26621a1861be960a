// The per-worker rate limiter: policy choice, near cache, and the on_redis_error modes, with an
// in-memory counter in place of Redis (the Redis script itself is tested in
// tests/integration/rate_limit_*_test.cpp) and an injected clock.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "authz/rate_limiter.hpp"
#include "store/metrics.hpp"
#include "store/redis_rate_counter.hpp"
#include "support/run_coro.hpp"

using namespace keygate;
using namespace keygate::authz;

namespace {

// Applies the pure arithmetic to in-memory counts, as the Lua script does in Redis; can be
// made unavailable or failing.
class FakeCounter final : public store::RateCounter {
 public:
  bool up = true;       // available()
  bool failing = false;  // hit() answers unavailable
  bool quota_lost = false;  // hit() answers quota_unavailable for keys with a quota
  int calls = 0;
  std::int64_t given_back = 0;  // lease requests returned

  bool available() const override { return up; }
  boost::asio::awaitable<store::WindowHitResult> hit(const store::WindowHit& request) override {
    ++calls;
    store::WindowHitResult out;
    if (failing) co_return out;
    if (request.quota != nullptr && quota_lost) {
      out.status = store::WindowHitResult::Status::quota_unavailable;
      co_return out;
    }
    REQUIRE(request.buckets == SlidingWindow::buckets);
    SlidingWindow w;
    w.limit = request.limit;
    w.bucket_ticks = request.bucket_ticks;
    w.tick_ms = request.tick_ms;
    const std::string counter(request.counter);
    const std::int64_t now_ms = request.now_ticks * request.tick_ms;
    out.status = store::WindowHitResult::Status::ok;
    std::int64_t* used = nullptr;
    if (request.quota != nullptr) {
      used = &quota_used[std::string(request.quota->key_id) + ":" +
                         std::to_string(request.quota->period_start_s)];
      if (*used >= request.quota->quota) {
        out.verdict = store::WindowHitResult::Verdict::quota_exceeded;
        out.quota_used = *used;
        const WindowCounts counts = windows_.peek(counter, w, now_ms);
        out.counts.assign(counts.at.begin(), counts.at.end());
        out.previous = counts.previous();
        out.current = counts.current();
        co_return out;
      }
    }
    WindowCounts before = windows_.peek(counter, w, now_ms);
    const std::int64_t slot = request.give_back_index - (w.bucket_index(now_ms) - SlidingWindow::buckets);
    if (request.give_back > 0 && slot >= 0 && slot <= SlidingWindow::buckets) {
      before.at[slot] -= std::min(request.give_back, before.at[slot]);
    }
    given_back += request.give_back;
    const WindowDecision d = decide(w, before, now_ms, request.quota != nullptr ? 1 : request.want);
    windows_.record(counter, w, now_ms, d.allowed ? d.counts : before);
    out.verdict = d.allowed ? store::WindowHitResult::Verdict::allowed
                            : store::WindowHitResult::Verdict::rate_limited;
    out.granted = d.granted;
    out.previous = d.counts.previous();
    out.current = d.counts.current();
    if (!d.allowed) out.counts.assign(d.counts.at.begin(), d.counts.at.end());
    if (used != nullptr) {
      if (d.allowed) ++*used;
      out.quota_used = *used;
    }
    co_return out;
  }

  std::map<std::string, std::int64_t> quota_used;  // "<key id>:<period start>"

 private:
  LocalSlidingWindows windows_;
};

struct Clock {
  std::int64_t ms = 1'700'000'000'000;  // a window boundary for 10 s and 60 s windows
  RateLimiter::Now source() {
    return [this] { return store::TimePoint(std::chrono::milliseconds(ms)); };
  }
};

store::KeyRecord key_with(std::string id, std::optional<int> limit = std::nullopt,
                          std::optional<int> window = std::nullopt) {
  store::KeyRecord key;
  key.id = std::move(id);
  key.rate_limit = limit;
  key.window_seconds = window;
  return key;
}

RateOutcome check(RateLimiter& limiter, const store::KeyRecord& key, const Route* route = nullptr) {
  return test::run_coro(limiter.check(key, route));
}

std::uint64_t near_hits() { return store::metrics().ratelimit_near_cache_hits.load(); }
std::uint64_t without_redis() { return store::metrics().ratelimit_decided_without_redis.load(); }

}  // namespace

TEST_CASE("policy: the route's limit, else the key's, else the default") {
  const core::RateLimitSpec fallback{100, 60};
  Route plain;
  Route limited;
  limited.rate_limit = core::RateLimitSpec{5, 1};

  CHECK(choose_policy(key_with("a"), nullptr, fallback) ==
        RateLimitPolicy{100, 60, RateLimitPolicy::Source::default_limit});
  CHECK(choose_policy(key_with("a", 10, 30), &plain, fallback) ==
        RateLimitPolicy{10, 30, RateLimitPolicy::Source::key});
  CHECK(choose_policy(key_with("a", 10), nullptr, fallback) ==
        RateLimitPolicy{10, 60, RateLimitPolicy::Source::key});
  CHECK(choose_policy(key_with("a", 10, 30), &limited, fallback) ==
        RateLimitPolicy{5, 1, RateLimitPolicy::Source::route});
  CHECK(choose_policy(key_with("a", 0, 30), nullptr, fallback).source ==
        RateLimitPolicy::Source::default_limit);
}

TEST_CASE("counter names: hash-tagged key id, window, and a stable tag per limited route") {
  Route get_route;
  get_route.pattern = "/inventory/*";
  get_route.methods = {"GET"};
  get_route.rate_limit = core::RateLimitSpec{5, 1};
  Route post_route = get_route;
  post_route.methods = {"POST"};
  const auto key = key_with("3f1c", 10, 30);

  CHECK(counter_name(key, nullptr, choose_policy(key, nullptr, {100, 60})) == "kg:rl:{3f1c}:30s");
  CHECK(counter_name(key, nullptr, choose_policy(key, nullptr, {100, 60}), "c:api_keys:") ==
        "kg:rl:{c:api_keys:3f1c}:30s");
  const std::string get_name = counter_name(key, &get_route, choose_policy(key, &get_route, {100, 60}));
  const std::string post_name = counter_name(key, &post_route, choose_policy(key, &post_route, {100, 60}));
  CHECK(get_name.rfind("kg:rl:{3f1c}:r", 0) == 0);
  CHECK(get_name.size() == std::string("kg:rl:{3f1c}:r0123456789abcdef:1s").size());
  CHECK(get_name != post_name);
  CHECK(get_name == counter_name(key, &get_route, choose_policy(key, &get_route, {100, 60})));
}

TEST_CASE("allowed requests carry the RateLimit-* values, the one over the limit gets 429") {
  FakeCounter redis;
  Clock clock;
  RateLimiter limiter({}, &redis, clock.source());
  const auto key = key_with("k-headers", 3, 10);

  RateOutcome first = check(limiter, key);
  CHECK(first.verdict == RateVerdict::allowed);
  CHECK(first.source == RateOutcome::Source::redis);
  CHECK(first.status.applies);
  CHECK(first.status.limit == 3);
  CHECK(first.status.remaining == 2);
  CHECK(first.status.reset_seconds == 11);  // its bucket leaves the window after 10.5 s
  CHECK(first.status.retry_after_seconds == 0);
  check(limiter, key);
  CHECK(check(limiter, key).status.remaining == 0);

  clock.ms += 1'000;
  const RateOutcome over = check(limiter, key);
  CHECK(over.verdict == RateVerdict::rate_limited);
  CHECK(over.status.remaining == 0);
  // The 3 sit in the first 500 ms bucket; 10 s on it is the oldest, and a request fits once
  // 3*(B-e) <= 2*B, e >= 167 ms: 10.167 s - 1 s = 9.167 s -> 10 s.
  CHECK(over.status.retry_after_seconds == 10);
  CHECK(redis.calls == 4);
}

TEST_CASE("near cache: over the limit, the worker answers 429 without Redis until retry time") {
  FakeCounter redis;
  Clock clock;
  RateLimiter limiter({}, &redis, clock.source());
  const auto key = key_with("k-near", 2, 10);
  check(limiter, key);
  check(limiter, key);
  REQUIRE(check(limiter, key).verdict == RateVerdict::rate_limited);
  REQUIRE(redis.calls == 3);

  const std::uint64_t hits_before = near_hits();
  for (int i = 0; i < 1000; ++i) {
    clock.ms += 1;
    const RateOutcome o = check(limiter, key);
    REQUIRE(o.verdict == RateVerdict::rate_limited);
    CHECK(o.source == RateOutcome::Source::near_cache);
    CHECK(o.status.retry_after_seconds >= 1);
  }
  CHECK(redis.calls == 3);
  CHECK(near_hits() - hits_before == 1000);
  CHECK(limiter.near_cache_size() == 1);

  // Another key is not affected.
  CHECK(check(limiter, key_with("k-near-other", 2, 10)).verdict == RateVerdict::allowed);

  // Retry time: the first bucket is the oldest from t0 + 10 s; p = 2 allows once e >= B/2.
  clock.ms = 1'700'000'000'000 + 10'250 - 1;
  CHECK(check(limiter, key).source == RateOutcome::Source::near_cache);
  clock.ms += 1;
  const RateOutcome again = check(limiter, key);
  CHECK(again.verdict == RateVerdict::allowed);
  CHECK(again.source == RateOutcome::Source::redis);
}

TEST_CASE("Redis failing, mode local: per-process windows with the limit divided by replicas") {
  FakeCounter redis;
  redis.failing = true;
  Clock clock;
  RateLimiterOptions options;
  options.replicas = 4;
  RateLimiter limiter(options, &redis, clock.source());
  const auto key = key_with("k-local", 40, 10);

  const std::uint64_t before = without_redis();
  int allowed = 0;
  for (int i = 0; i < 100; ++i) {
    const RateOutcome o = check(limiter, key);
    CHECK(o.source == RateOutcome::Source::without_redis);
    CHECK(o.status.limit == 40);
    allowed += o.verdict == RateVerdict::allowed ? 1 : 0;
  }
  CHECK(allowed == 10);
  CHECK(without_redis() - before == 100);
  CHECK(redis.calls == 1);  // after a failure Redis is skipped for redis_retry_interval

  // Redis is back: the first request after the interval goes to Redis and stays there.
  redis.failing = false;
  clock.ms += 1'000;
  const RateOutcome back = check(limiter, key);
  CHECK(back.source == RateOutcome::Source::redis);
  CHECK(back.verdict == RateVerdict::allowed);
  CHECK(check(limiter, key).source == RateOutcome::Source::redis);
  CHECK(redis.calls == 3);
  CHECK(without_redis() - before == 100);
}

TEST_CASE("Redis disconnected: no call at all, decided locally") {
  FakeCounter redis;
  redis.up = false;
  Clock clock;
  RateLimiter limiter({}, &redis, clock.source());
  const std::uint64_t before = without_redis();
  CHECK(check(limiter, key_with("k-down", 1, 10)).verdict == RateVerdict::allowed);
  CHECK(check(limiter, key_with("k-down", 1, 10)).verdict == RateVerdict::rate_limited);
  CHECK(redis.calls == 0);
  CHECK(without_redis() - before == 2);
  redis.up = true;
  CHECK(check(limiter, key_with("k-down-2", 1, 10)).source == RateOutcome::Source::redis);
}

TEST_CASE("no Redis configured: every request is decided locally") {
  Clock clock;
  RateLimiter limiter({}, nullptr, clock.source());
  CHECK(check(limiter, key_with("k-none", 1, 10)).source == RateOutcome::Source::without_redis);
}

TEST_CASE("Redis failing, mode error: unavailable (a store error), no RateLimit-* headers") {
  FakeCounter redis;
  redis.failing = true;
  Clock clock;
  RateLimiterOptions options;
  options.on_redis_error = OnRedisError::error;
  RateLimiter limiter(options, &redis, clock.source());
  const std::uint64_t before = without_redis();
  for (int i = 0; i < 3; ++i) {
    const RateOutcome o = check(limiter, key_with("k-error", 5, 10));
    CHECK(o.verdict == RateVerdict::unavailable);
    CHECK_FALSE(o.status.applies);
    CHECK(o.status.retry_after_seconds == 1);
  }
  CHECK(without_redis() - before == 3);
}

TEST_CASE("quota: counted with the window, 429 quota_exceeded at zero, then the near cache") {
  FakeCounter redis;
  Clock clock;
  RateLimiter limiter({}, &redis, clock.source());
  auto key = key_with("k-quota", 100, 60);
  key.quota = 3;

  const RateOutcome first = check(limiter, key);
  CHECK(first.verdict == RateVerdict::allowed);
  CHECK(first.quota_used == 1);
  CHECK(first.status.limit == 100);     // a quota that never refills: the window's limit
  CHECK(first.status.remaining == 2);   // but what is left of the quota, the smaller
  check(limiter, key);
  CHECK(check(limiter, key).status.remaining == 0);
  const RateOutcome over = check(limiter, key);
  CHECK(over.verdict == RateVerdict::quota_exceeded);
  CHECK(over.source == RateOutcome::Source::redis);
  CHECK(over.status.remaining == 0);
  CHECK(redis.calls == 4);

  // Known to be used up: answered here, asked again after a second (a raised quota applies).
  clock.ms += 10;
  const RateOutcome cached = check(limiter, key);
  CHECK(cached.verdict == RateVerdict::quota_exceeded);
  CHECK(cached.source == RateOutcome::Source::near_cache);
  CHECK(redis.calls == 4);
  clock.ms += 1'000;
  key.quota = 4;
  CHECK(check(limiter, key).verdict == RateVerdict::allowed);
  CHECK(redis.calls == 5);
}

TEST_CASE("quota with a period: headers show the quota and the end of its period") {
  FakeCounter redis;
  Clock clock;  // 800 s into an hour
  RateLimiter limiter({}, &redis, clock.source());
  auto key = key_with("k-quota-period", 100, 60);
  key.quota = 2;
  key.quota_period_seconds = 3600;
  const std::int64_t period_end_s = (1'700'000'000 / 3600 + 1) * 3600;

  const RateOutcome first = check(limiter, key);
  CHECK(first.status.limit == 2);
  CHECK(first.status.remaining == 1);
  CHECK(first.status.reset_seconds == period_end_s - 1'700'000'000);
  check(limiter, key);
  const RateOutcome over = check(limiter, key);
  CHECK(over.verdict == RateVerdict::quota_exceeded);
  CHECK(over.status.retry_after_seconds == period_end_s - 1'700'000'000);

  // The next period starts from zero.
  clock.ms = period_end_s * 1000;
  CHECK(check(limiter, key).verdict == RateVerdict::allowed);
}

TEST_CASE("quota count lost (Redis and PostgreSQL): local mode goes on from the last count seen") {
  FakeCounter redis;
  Clock clock;
  RateLimiter limiter({}, &redis, clock.source());
  auto key = key_with("k-quota-lost", 100, 60);
  key.quota = 5;
  check(limiter, key);
  check(limiter, key);
  check(limiter, key);
  redis.quota_lost = true;
  const std::uint64_t before = without_redis();
  CHECK(check(limiter, key).verdict == RateVerdict::allowed);  // 4
  CHECK(check(limiter, key).verdict == RateVerdict::allowed);  // 5
  const RateOutcome over = check(limiter, key);
  CHECK(over.verdict == RateVerdict::quota_exceeded);
  CHECK(over.source == RateOutcome::Source::without_redis);
  CHECK(without_redis() - before == 3);
  // Only that key: another key without a quota is still decided by Redis.
  CHECK(check(limiter, key_with("k-no-quota", 5, 60)).source == RateOutcome::Source::redis);
}

TEST_CASE("lease: one call counts up to `lease` requests, the worker admits the rest itself") {
  FakeCounter redis;
  Clock clock;
  RateLimiterOptions options;
  options.lease = 100;
  RateLimiter limiter(options, &redis, clock.source());
  const auto key = key_with("k-lease", 1000, 60);  // B = 3 s
  const std::uint64_t lease_hits_before = store::metrics().ratelimit_lease_hits.load();

  // The first call of a sub-window counts one request; the second takes a lease of
  // 999 / 16 = 62 (this request and 61 more).
  for (int i = 1; i <= 63; ++i) {
    const RateOutcome out = check(limiter, key);
    REQUIRE(out.verdict == RateVerdict::allowed);
    // Remaining is what an exact count would say: the lease's unused requests are not spent.
    CHECK(out.status.remaining == 1000 - i);
  }
  CHECK(redis.calls == 2);
  CHECK(store::metrics().ratelimit_lease_hits.load() - lease_hits_before == 61);
  check(limiter, key);  // the lease is used up: a third call (room 937 -> 58)
  CHECK(redis.calls == 3);

  // Next bucket: the old lease is over; its 57 unused requests go back with the next call.
  clock.ms += 3'000;
  check(limiter, key);
  CHECK(redis.calls == 4);
  CHECK(redis.given_back == 57);
  CHECK(check(limiter, key).status.remaining == 1000 - 66);
}

TEST_CASE("lease: near the limit every call counts one request, and a fleet never exceeds it") {
  FakeCounter redis;  // shared: two workers (or replicas) on one Redis
  Clock clock;
  RateLimiterOptions options;
  options.lease = 100;
  RateLimiter a(options, &redis, clock.source());
  RateLimiter b(options, &redis, clock.source());
  const auto key = key_with("k-fleet", 100, 10);  // room 100 -> leases of 6, then smaller

  int admitted = 0;
  for (int i = 0; i < 400; ++i) {
    RateLimiter& worker = (i % 3 == 0) ? b : a;  // uneven, like real load
    if (check(worker, key).verdict == RateVerdict::allowed) ++admitted;
  }
  // Each call counted its whole lease before any of it was used: never more than the limit;
  // fewer only by what one worker still holds unused when the other is refused.
  CHECK(admitted <= 100);
  CHECK(admitted >= 100 - 2 * 6);
  CHECK(redis.calls < 400);
}

TEST_CASE("lease: keys with a quota are counted one request per call") {
  FakeCounter redis;
  Clock clock;
  RateLimiterOptions options;
  options.lease = 100;
  RateLimiter limiter(options, &redis, clock.source());
  auto key = key_with("k-lease-quota", 1000, 60);
  key.quota = 500;
  for (int i = 0; i < 10; ++i) check(limiter, key);
  CHECK(redis.calls == 10);
}

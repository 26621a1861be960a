// authz::RateLimiter on real Redis: the shared counter, the over-limit near cache, two limiters
// sharing one limit, keys expiring by themselves, NOSCRIPT reload, and Redis killed and back.
// Time is injected (the script takes `now` from the caller), so nothing here sleeps.
#include <doctest/doctest.h>

#include <boost/asio/this_coro.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

#include <unistd.h>

#include "authz/rate_limiter.hpp"
#include "store/metrics.hpp"
#include "store/migrator.hpp"
#include "store/pg_pool.hpp"
#include "store/quota_ledger.hpp"
#include "store/redis_client.hpp"
#include "store/redis_rate_counter.hpp"
#include "support/redis_server.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"
#include "support/test_env.hpp"

namespace asio = boost::asio;
using namespace keygate;
using namespace std::chrono_literals;
using authz::RateOutcome;
using authz::RateVerdict;

namespace {

store::RedisOptions options_for(const std::string& url) {
  std::string error;
  auto options = store::parse_redis_url(url, &error);
  REQUIRE_MESSAGE(options.has_value(), error);
  return *options;
}

// A key id no other test (or run) uses.
std::string unique_id(const std::string& name) {
  static std::mt19937_64 random{std::random_device{}()};
  return "rl-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(random());
}

store::KeyRecord key_with(const std::string& id, int limit, int window_seconds) {
  store::KeyRecord key;
  key.id = id;
  key.rate_limit = limit;
  key.window_seconds = window_seconds;
  return key;
}

// The injected clock: starts at a 60 s boundary near the real time, moves only when told.
struct TestClock {
  std::int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        store::Clock::now().time_since_epoch()).count() / 60'000 * 60'000;
  authz::RateLimiter::Now source() {
    return [this] { return store::TimePoint(std::chrono::milliseconds(ms)); };
  }
};

std::uint64_t redis_calls() { return store::metrics().ratelimit_redis_calls.load(); }
std::uint64_t without_redis() { return store::metrics().ratelimit_decided_without_redis.load(); }

template <typename... Args>
asio::awaitable<store::RedisResult> call(store::RedisClient& client, Args... args) {
  const std::array<std::string_view, sizeof...(Args)> argv{std::string_view(args)...};
  co_return co_await client.command(argv);
}

}  // namespace

TEST_CASE("a flood over the limit costs Redis one call per allowed request plus one") {
  const auto options = options_for(test::redis_url());
  test::run_coro([&]() -> asio::awaitable<void> {
    store::RedisClient redis(co_await asio::this_coro::executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::RedisRateCounter counter(redis);
    TestClock clock;
    authz::RateLimiter limiter({}, &counter, clock.source());
    const auto key = key_with(unique_id("flood"), 5, 60);

    const std::uint64_t calls_before = redis_calls();
    const std::uint64_t near_before = store::metrics().ratelimit_near_cache_hits.load();
    int allowed = 0;
    for (int i = 0; i < 10'000; ++i) {
      const RateOutcome o = co_await limiter.check(key, nullptr);
      if (o.verdict == RateVerdict::allowed) ++allowed;
      CHECK(o.status.applies);
      CHECK(o.status.limit == 5);
      if (i == 5) {
        CHECK(o.verdict == RateVerdict::rate_limited);
        CHECK(o.source == RateOutcome::Source::redis);
        CHECK(o.status.retry_after_seconds > 0);
      }
      if (i % 100 == 0) clock.ms += 1;  // the flood lasts 100 ms
    }
    const std::uint64_t calls = redis_calls() - calls_before;
    MESSAGE("10000 requests, limit 5/60s: " << allowed << " allowed, " << calls << " Redis calls, "
            << store::metrics().ratelimit_near_cache_hits.load() - near_before << " near-cache 429s");
    CHECK(allowed == 5);
    CHECK(calls == 6);
    CHECK(store::metrics().ratelimit_near_cache_hits.load() - near_before == 10'000 - 6);

    // When the window can allow a request again, the next one goes to Redis and passes.
    clock.ms += 60'000 + 12'000;  // next window, p = 5: allowed once e >= W/5 = 12 s
    const RateOutcome later = co_await limiter.check(key, nullptr);
    CHECK(later.verdict == RateVerdict::allowed);
    CHECK(later.source == RateOutcome::Source::redis);
    redis.stop();
  }());
}

TEST_CASE("two limiters with their own connections share one limit through Redis") {
  const auto options = options_for(test::redis_url());
  test::run_coro([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    store::RedisClient redis_a(executor, options);
    store::RedisClient redis_b(executor, options);
    redis_a.start();
    redis_b.start();
    REQUIRE(co_await redis_a.wait_connected(5s));
    REQUIRE(co_await redis_b.wait_connected(5s));
    store::RedisRateCounter counter_a(redis_a);
    store::RedisRateCounter counter_b(redis_b);
    TestClock clock;
    authz::RateLimiter replica_a({}, &counter_a, clock.source());
    authz::RateLimiter replica_b({}, &counter_b, clock.source());
    const auto key = key_with(unique_id("shared"), 30, 60);

    int allowed_a = 0;
    int allowed_b = 0;
    for (int i = 0; i < 200; ++i) {
      if ((co_await replica_a.check(key, nullptr)).verdict == RateVerdict::allowed) ++allowed_a;
      if ((co_await replica_b.check(key, nullptr)).verdict == RateVerdict::allowed) ++allowed_b;
      clock.ms += 10;
    }
    MESSAGE("limit 30/60s over two limiters: " << allowed_a << " + " << allowed_b << " allowed");
    CHECK(allowed_a + allowed_b == 30);
    CHECK(allowed_a >= 15);
    CHECK(allowed_b >= 15);
    redis_a.stop();
    redis_b.stop();
  }());
}

TEST_CASE("leases in Redis: one call counts a lease, the C++ arithmetic agrees, unused requests "
          "go back to their bucket") {
  const auto options = options_for(test::redis_url());
  test::run_coro([&]() -> asio::awaitable<void> {
    store::RedisClient redis(co_await asio::this_coro::executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::RedisRateCounter counter(redis);
    TestClock clock;
    authz::RateLimiterOptions lease_options;
    lease_options.lease = 100;
    authz::RateLimiter limiter(lease_options, &counter, clock.source());
    const std::string id = unique_id("lease");
    const auto key = key_with(id, 1000, 60);  // B = 3 s
    const std::string redis_key = "kg:rl:{" + id + "}:60s";
    const std::string first_bucket = std::to_string(clock.ms / 3'000);

    const std::uint64_t calls_before = redis_calls();
    for (int i = 1; i <= 70; ++i) {
      const RateOutcome o = co_await limiter.check(key, nullptr);
      REQUIRE(o.verdict == RateVerdict::allowed);
      CHECK(o.status.remaining == 1000 - i);
    }
    // 1 (first call of the sub-window), a lease of 62 (room 999 / 16), then 58 (room 937 / 16).
    CHECK(redis_calls() - calls_before == 3);
    const store::RedisResult counted = co_await call(redis, "HGET", redis_key, first_bucket);
    REQUIRE(counted.ok());
    CHECK(counted.reply.str == "121");  // counted before admitted: 70 used, 51 held

    // The next bucket: the next call gives the 51 back to the first bucket.
    clock.ms += 3'000;
    REQUIRE((co_await limiter.check(key, nullptr)).verdict == RateVerdict::allowed);
    const store::RedisResult after = co_await call(redis, "HGET", redis_key, first_bucket);
    REQUIRE(after.ok());
    CHECK(after.reply.str == "70");

    // The same script call, C++ side by side: want 100 at room 1000 - 70 - 1.
    const authz::SlidingWindow window = authz::SlidingWindow::make(1000, 60);
    authz::WindowCounts before;
    before.at[authz::SlidingWindow::buckets - 1] = 70;
    before.at[authz::SlidingWindow::buckets] = 1;
    const authz::WindowDecision expected = authz::decide(window, before, clock.ms, 100);
    store::WindowHit hit;
    hit.counter = redis_key;
    hit.limit = window.limit;
    hit.bucket_ticks = window.bucket_ticks;
    hit.buckets = authz::SlidingWindow::buckets;
    hit.now_ticks = window.ticks(clock.ms);
    hit.tick_ms = window.tick_ms;
    hit.want = 100;
    const store::WindowHitResult got = co_await counter.hit(hit);
    REQUIRE(got.status == store::WindowHitResult::Status::ok);
    CHECK(got.granted == expected.granted);
    CHECK(got.previous == expected.counts.previous());
    CHECK(got.current == expected.counts.current());
    redis.stop();
  }());
}

TEST_CASE("the counter keys expire by themselves after the following window") {
  const auto options = options_for(test::redis_url());
  test::run_coro([&]() -> asio::awaitable<void> {
    store::RedisClient redis(co_await asio::this_coro::executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::RedisRateCounter counter(redis);
    TestClock clock;
    clock.ms += 1'500;
    authz::RateLimiter limiter({}, &counter, clock.source());
    const std::string id = unique_id("expiry");
    const auto key = key_with(id, 10, 60);
    REQUIRE((co_await limiter.check(key, nullptr)).verdict == RateVerdict::allowed);

    // A hash of 3 s buckets (60 s / 20), the field named by the bucket's index.
    const std::string redis_key = "kg:rl:{" + id + "}:60s";
    const std::string bucket = std::to_string(clock.ms / 3'000);
    const store::RedisResult count = co_await call(redis, "HGET", redis_key, bucket);
    REQUIRE(count.ok());
    CHECK(count.reply.str == "1");
    const store::RedisResult ttl = co_await call(redis, "PTTL", redis_key);
    REQUIRE(ttl.ok());
    // Until the bucket has left the window (21 buckets of 3 s - 1.5 s), plus 1 s of slack.
    CHECK(ttl.reply.integer > 60'000);
    CHECK(ttl.reply.integer <= 62'500);
    redis.stop();
  }());
}

TEST_CASE("after SCRIPT FLUSH the script is loaded again and counting goes on") {
  test::RedisServer server;
  const auto options = options_for(server.url());
  test::run_coro([&]() -> asio::awaitable<void> {
    store::RedisClient redis(co_await asio::this_coro::executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::RedisRateCounter counter(redis);
    TestClock clock;
    authz::RateLimiter limiter({}, &counter, clock.source());
    const auto key = key_with(unique_id("noscript"), 3, 60);
    CHECK((co_await limiter.check(key, nullptr)).status.remaining == 2);
    REQUIRE((co_await call(redis, "SCRIPT", "FLUSH")).ok());
    const RateOutcome after = co_await limiter.check(key, nullptr);
    CHECK(after.source == RateOutcome::Source::redis);
    CHECK(after.status.remaining == 1);
    redis.stop();
  }());
}

TEST_CASE("Redis killed: mode local decides per process with limit / replicas, then Redis again") {
  test::RedisServer server;
  const auto options = options_for(server.url());
  test::run_coro([&]() -> asio::awaitable<void> {
    store::RedisClient redis(co_await asio::this_coro::executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::RedisRateCounter counter(redis);
    TestClock clock;
    authz::RateLimiterOptions limiter_options;
    limiter_options.replicas = 2;
    authz::RateLimiter limiter(limiter_options, &counter, clock.source());
    const auto key = key_with(unique_id("killed"), 10, 60);

    REQUIRE((co_await limiter.check(key, nullptr)).source == RateOutcome::Source::redis);
    server.stop();

    const std::uint64_t before = without_redis();
    int allowed = 0;
    for (int i = 0; i < 50; ++i) {
      const RateOutcome o = co_await limiter.check(key, nullptr);
      CHECK(o.source == RateOutcome::Source::without_redis);
      if (o.verdict == RateVerdict::allowed) ++allowed;
      clock.ms += 1;
    }
    CHECK(allowed == 5);  // 10 / 2 replicas, counted from zero in this process
    CHECK(without_redis() - before == 50);

    server.start();
    REQUIRE(co_await redis.wait_connected(10s));
    clock.ms += 1'000;  // past redis_retry_interval
    const RateOutcome back = co_await limiter.check(key, nullptr);
    CHECK(back.source == RateOutcome::Source::redis);
    CHECK(back.verdict == RateVerdict::allowed);  // a fresh server: the shared count restarts
    CHECK(without_redis() - before == 50);
    redis.stop();
  }());
}

TEST_CASE("a quota survives a Redis restart: the count is reloaded from PostgreSQL") {
  test::ScratchDatabase db;
  db.migrate_up();
  const std::string id = db.sql("INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash, quota) "
                                "VALUES ('user', '1', 'q', 'kg_live_abcd', decode(repeat('ab', 32), 'hex'), 10) "
                                "RETURNING id::text").get(0, 0).data();
  test::RedisServer server;
  const auto options = options_for(server.url());
  test::run_coro([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    store::RedisClient redis(executor, options);
    redis.start();
    REQUIRE(co_await redis.wait_connected(5s));
    store::PgPool pool(executor, store::PgOptions{db.dsn(), 1, 5s, 5s});
    store::PgQuotaLedger ledger(executor, pool);
    store::RedisRateCounter counter(redis, &ledger);
    TestClock clock;
    authz::RateLimiter limiter({}, &counter, clock.source());
    store::KeyRecord key = key_with(id, 1000, 60);
    key.quota = 10;

    for (int i = 0; i < 6; ++i) {
      const RateOutcome o = co_await limiter.check(key, nullptr);
      CHECK(o.verdict == RateVerdict::allowed);
      CHECK(o.quota_used == i + 1);
    }
    CHECK(ledger.pending() == 1);
    REQUIRE(co_await ledger.flush());
    CHECK(ledger.pending() == 0);
    CHECK(db.sql("SELECT used FROM api_key_quota_usage WHERE api_key_id = '" + id + "'").get(0, 0) == "6");

    // Redis loses everything: the count comes back from PostgreSQL, not from zero.
    server.stop();
    server.start();
    // The client notices the restart on its next command: wait until one goes through.
    bool answered = false;
    for (int attempt = 0; attempt < 100 && !answered; ++attempt) {
      co_await redis.wait_connected(100ms);
      const store::RedisResult pong = co_await call(redis, "PING");
      answered = pong.ok();
    }
    REQUIRE(answered);
    REQUIRE((co_await call(redis, "DBSIZE")).reply.integer == 0);  // Redis lost everything
    clock.ms += 1'000;  // past redis_retry_interval
    int allowed = 0;
    RateOutcome last;
    for (int i = 0; i < 8; ++i) {
      last = co_await limiter.check(key, nullptr);
      if (last.verdict == RateVerdict::allowed) ++allowed;
      CHECK(last.source != RateOutcome::Source::without_redis);
      clock.ms += 1;
    }
    MESSAGE("quota 10, 6 used and persisted, Redis restarted: " << allowed << " more allowed");
    CHECK(allowed == 4);
    CHECK(last.verdict == RateVerdict::quota_exceeded);
    CHECK(last.status.remaining == 0);
    REQUIRE(co_await ledger.flush());
    CHECK(db.sql("SELECT used FROM api_key_quota_usage WHERE api_key_id = '" + id + "'").get(0, 0) == "10");
    redis.stop();
  }());
}

TEST_CASE("quota ledger: concurrent writers never move a period's count backwards") {
  test::ScratchDatabase db;
  db.migrate_up();
  const std::string id = db.sql("INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash, quota, "
                                "quota_period_seconds) VALUES ('user', '1', 'q', 'kg_live_abcd', "
                                "decode(repeat('cd', 32), 'hex'), 100, 3600) RETURNING id::text").get(0, 0).data();
  test::run_coro([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    store::PgPool pool(executor, store::PgOptions{db.dsn(), 1, 5s, 5s});
    store::PgQuotaLedger a(executor, pool);
    store::PgQuotaLedger b(executor, pool);
    a.note(id, 3600, 40);
    b.note(id, 3600, 30);  // an older count from another worker
    REQUIRE(co_await a.flush());
    REQUIRE(co_await b.flush());
    const auto kept = co_await b.load(id, 3600);
    CHECK(kept == std::optional<std::int64_t>(40));
    const auto other_period = co_await b.load(id, 7200);
    CHECK(other_period == std::optional<std::int64_t>(0));
    b.note(id, 7200, 3);  // the next period replaces the old one
    REQUIRE(co_await b.flush());
    a.note(id, 3600, 55);  // a late count of the old period changes nothing
    REQUIRE(co_await a.flush());
    const auto next = co_await a.load(id, 7200);
    CHECK(next == std::optional<std::int64_t>(3));
    const auto old = co_await a.load(id, 3600);
    CHECK(old == std::optional<std::int64_t>(0));
  }());
}

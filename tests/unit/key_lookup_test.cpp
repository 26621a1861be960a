// The tiered lookup's decisions, with in-memory stand-ins for Redis and PostgreSQL (no I/O):
// which tier answers, what gets filled on the way back, and miss coalescing.
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <map>

#include "store/key_lookup.hpp"
#include "support/run_coro.hpp"

namespace asio = boost::asio;
using namespace keygate::store;

namespace {

KeyHash hash_of(std::uint8_t seed) {
  KeyHash h{};
  h.fill(seed);
  return h;
}

class MemorySharedCache final : public SharedKeyCache {
 public:
  asio::awaitable<TierAnswer> get(const KeyHash& hash) override {
    ++gets;
    if (down) co_return TierAnswer{TierAnswer::Status::unavailable, nullptr};
    auto it = records.find(hash);
    if (it == records.end()) co_return TierAnswer{TierAnswer::Status::not_found, nullptr};
    co_return TierAnswer{TierAnswer::Status::found, std::make_shared<KeyRecord>(it->second)};
  }
  void put(const KeyHash& hash, const KeyRecord& record) override { records[hash] = record; }
  // Writing the marker takes `invalidate_delay` (a slow Redis): lookups can run meanwhile.
  asio::awaitable<bool> invalidate(const KeyHash& hash) override {
    ++invalidations_tried;
    asio::steady_timer pause(co_await asio::this_coro::executor, invalidate_delay);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    if (refuse_invalidations > 0) {
      --refuse_invalidations;
      co_return false;
    }
    records.erase(hash);
    co_return true;
  }

  std::map<KeyHash, KeyRecord> records;
  bool down = false;
  int gets = 0;
  std::chrono::milliseconds invalidate_delay{0};
  int refuse_invalidations = 0;  // the next N invalidations fail (Redis unreachable)
  int invalidations_tried = 0;
};

// Answers after a short pause, so that concurrent lookups overlap.
class SlowSource final : public KeySource {
 public:
  asio::awaitable<TierAnswer> find(const KeyHash& hash, std::string_view) override {
    ++queries;
    asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(20));
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    if (down) co_return TierAnswer{TierAnswer::Status::unavailable, nullptr};
    auto it = records.find(hash);
    if (it == records.end()) co_return TierAnswer{TierAnswer::Status::not_found, nullptr};
    co_return TierAnswer{TierAnswer::Status::found, std::make_shared<KeyRecord>(it->second)};
  }
  std::map<KeyHash, KeyRecord> records;
  bool down = false;
  int queries = 0;
};

KeyRecord record(const char* id) {
  KeyRecord r;
  r.id = id;
  return r;
}

L1Cache::Options l1_options() { return {1000, std::chrono::seconds(30), std::chrono::seconds(5)}; }

}  // namespace

TEST_CASE("a miss goes L1 -> shared cache -> source and fills both on the way back") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  postgres.records[hash_of(1)] = record("k1");
  auto result = keygate::test::run_coro([&]() -> asio::awaitable<LookupResult> {
    KeyLookup lookup(co_await asio::this_coro::executor, l1, &redis, postgres);
    LookupResult first = co_await lookup.lookup(hash_of(1));
    CHECK(first.tier == LookupTier::postgres);
    co_return co_await lookup.lookup(hash_of(1));
  }());
  CHECK(result.status == LookupResult::Status::found);
  CHECK(result.tier == LookupTier::l1);
  CHECK(result.record->id == "k1");
  CHECK(result.record->key_hash == hash_of(1));
  CHECK(redis.records.count(hash_of(1)) == 1);
  CHECK(postgres.queries == 1);
}

TEST_CASE("a shared-cache hit needs no source query") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  redis.records[hash_of(2)] = record("k2");
  auto result = keygate::test::run_coro([&]() -> asio::awaitable<LookupResult> {
    KeyLookup lookup(co_await asio::this_coro::executor, l1, &redis, postgres);
    co_return co_await lookup.lookup(hash_of(2));
  }());
  CHECK(result.status == LookupResult::Status::found);
  CHECK(result.tier == LookupTier::redis);
  CHECK(postgres.queries == 0);
}

TEST_CASE("concurrent misses for one hash cost one source query") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  postgres.records[hash_of(3)] = record("k3");
  int found = 0;
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    KeyLookup lookup(executor, l1, &redis, postgres);
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    int running = 100;
    for (int i = 0; i < 100; ++i) {
      asio::co_spawn(executor, [&]() -> asio::awaitable<void> {
        LookupResult r = co_await lookup.lookup(hash_of(3));
        if (r.status == LookupResult::Status::found) ++found;
        if (--running == 0) all_done.cancel();
      }, asio::detached);
    }
    co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  }());
  CHECK(found == 100);
  CHECK(postgres.queries == 1);
  CHECK(redis.gets == 1);
}

TEST_CASE("an unknown key is remembered as absent, a source failure is an error, never cached") {
  L1Cache l1(l1_options());
  SlowSource postgres;
  auto results = keygate::test::run_coro([&]() -> asio::awaitable<std::pair<LookupResult, LookupResult>> {
    KeyLookup lookup(co_await asio::this_coro::executor, l1, nullptr, postgres);
    LookupResult unknown = co_await lookup.lookup(hash_of(4));
    postgres.down = true;
    LookupResult failed = co_await lookup.lookup(hash_of(5));
    co_return std::make_pair(unknown, failed);
  }());
  CHECK(results.first.status == LookupResult::Status::not_found);
  CHECK(l1.find(hash_of(4), L1Cache::SteadyClock::now()).probe == L1Cache::Probe::known_absent);
  CHECK(results.second.status == LookupResult::Status::error);
  CHECK(l1.find(hash_of(5), L1Cache::SteadyClock::now()).probe == L1Cache::Probe::miss);
}

TEST_CASE("with the shared cache down, lookups go to the source and do not fill it") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  redis.down = true;
  SlowSource postgres;
  postgres.records[hash_of(6)] = record("k6");
  auto result = keygate::test::run_coro([&]() -> asio::awaitable<LookupResult> {
    KeyLookup lookup(co_await asio::this_coro::executor, l1, &redis, postgres);
    co_return co_await lookup.lookup(hash_of(6));
  }());
  CHECK(result.status == LookupResult::Status::found);
  CHECK(result.tier == LookupTier::postgres);
  CHECK(redis.records.empty());
}

TEST_CASE("forget_key: a lookup before the shared-cache marker is written reads PostgreSQL, "
          "not the old record in Redis") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  const KeyHash hash = hash_of(7);
  KeyRecord before = record("k7");
  redis.records[hash] = before;  // the old record, still in Redis
  KeyRecord revoked = before;
  revoked.is_active = false;
  postgres.records[hash] = revoked;  // PostgreSQL already has the change
  redis.invalidate_delay = std::chrono::milliseconds(50);

  const LookupResult after = keygate::test::run_coro([&]() -> asio::awaitable<LookupResult> {
    auto executor = co_await asio::this_coro::executor;
    KeyLookup lookup(executor, l1, &redis, postgres);
    const LookupResult warm = co_await lookup.lookup(hash);
    REQUIRE(warm.record->is_active);
    bool forgotten = false;
    asio::co_spawn(executor, forget_key(l1, &redis, hash, std::chrono::seconds(300)),
                   [&forgotten](std::exception_ptr) { forgotten = true; });
    // While the marker is being written: L1 was dropped, Redis still has the old record, and
    // this process does not read it.
    asio::steady_timer pause(executor, std::chrono::milliseconds(10));
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    const LookupResult racing = co_await lookup.lookup(hash);
    CHECK(racing.tier == LookupTier::postgres);
    CHECK_FALSE(racing.record->is_active);
    while (!forgotten) {
      pause.expires_after(std::chrono::milliseconds(5));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return co_await lookup.lookup(hash);
  }());
  CHECK(after.tier == LookupTier::postgres);
  REQUIRE(after.record);
  CHECK_FALSE(after.record->is_active);
}

TEST_CASE("forget_key: a marker Redis refuses is retried, and until it lands Redis is not read "
          "for that key") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  const KeyHash hash = hash_of(8);
  KeyRecord before = record("k8");
  redis.records[hash] = before;
  KeyRecord revoked = before;
  revoked.revoked_at = Clock::now();
  postgres.records[hash] = revoked;
  redis.refuse_invalidations = 3;  // e.g. this worker's Redis connection is reconnecting

  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    KeyLookup lookup(executor, l1, &redis, postgres);
    bool forgotten = false;
    asio::co_spawn(executor, forget_key(l1, &redis, hash, std::chrono::seconds(300)),
                   [&forgotten](std::exception_ptr) { forgotten = true; });
    asio::steady_timer pause(executor);
    int lookups = 0;
    while (!forgotten) {
      const LookupResult during = co_await lookup.lookup(hash);
      CHECK(during.tier != LookupTier::redis);  // never the stale copy
      REQUIRE(during.record);
      CHECK(during.record->revoked_at);
      ++lookups;
      pause.expires_after(std::chrono::milliseconds(20));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    CHECK(lookups > 1);
    CHECK(redis.invalidations_tried == 4);  // three refused, the fourth written
    CHECK(redis.records.count(hash) == 0);
    CHECK(l1.shared_cache_trusted(hash, L1Cache::SteadyClock::now()));
  }());
}

TEST_CASE("forget_key: gives up on the marker once the old record has expired from Redis") {
  L1Cache l1(l1_options());
  MemorySharedCache redis;
  SlowSource postgres;
  const KeyHash hash = hash_of(9);
  redis.refuse_invalidations = 1000;
  keygate::test::run_coro(forget_key(l1, &redis, hash, std::chrono::milliseconds(200)));
  CHECK(redis.invalidations_tried >= 2);
  CHECK(redis.invalidations_tried < 10);
  CHECK(l1.shared_cache_trusted(hash, L1Cache::SteadyClock::now()));
}

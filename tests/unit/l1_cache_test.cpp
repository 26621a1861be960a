#include <doctest/doctest.h>

#include "store/l1_cache.hpp"

using keygate::store::KeyHash;
using keygate::store::KeyRecord;
using keygate::store::L1Cache;

namespace {

KeyHash hash_of(std::uint8_t seed) {
  KeyHash h{};
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint8_t>(seed * 31 + i);
  return h;
}

std::shared_ptr<const KeyRecord> record(const char* id) {
  auto r = std::make_shared<KeyRecord>();
  r->id = id;
  return r;
}

const auto t0 = L1Cache::SteadyClock::time_point{} + std::chrono::hours(1);

}  // namespace

TEST_CASE("a cached record is found until its TTL passes") {
  L1Cache cache({100, std::chrono::seconds(30), std::chrono::seconds(5)});
  cache.put(hash_of(1), record("a"), cache.epoch(), t0);
  auto found = cache.find(hash_of(1), t0 + std::chrono::seconds(29));
  REQUIRE(found.probe == L1Cache::Probe::hit);
  CHECK(found.record->id == "a");
  CHECK(cache.find(hash_of(1), t0 + std::chrono::seconds(30)).probe == L1Cache::Probe::miss);
  CHECK(cache.find(hash_of(2), t0).probe == L1Cache::Probe::miss);
}

TEST_CASE("an unknown hash is remembered for the shorter negative TTL") {
  L1Cache cache({100, std::chrono::seconds(30), std::chrono::seconds(5)});
  cache.put_absent(hash_of(3), cache.epoch(), t0);
  CHECK(cache.find(hash_of(3), t0 + std::chrono::seconds(4)).probe == L1Cache::Probe::known_absent);
  CHECK(cache.find(hash_of(3), t0 + std::chrono::seconds(5)).probe == L1Cache::Probe::miss);
}

TEST_CASE("a lookup that started before a key's invalidation cannot cache that key") {
  L1Cache cache({100, std::chrono::seconds(30), std::chrono::seconds(5)});
  const auto started = cache.epoch();
  cache.invalidate(hash_of(4));
  cache.put(hash_of(4), record("stale"), started, t0);
  CHECK(cache.find(hash_of(4), t0).probe == L1Cache::Probe::miss);
  // Another key's lookup from the same moment is not affected.
  cache.put(hash_of(5), record("other"), started, t0);
  CHECK(cache.find(hash_of(5), t0).probe == L1Cache::Probe::hit);
  // A lookup that starts after the invalidation may cache the key again.
  cache.put(hash_of(4), record("fresh"), cache.epoch(), t0);
  CHECK(cache.find(hash_of(4), t0).record->id == "fresh");
}

TEST_CASE("invalidate_all empties the cache and blocks every lookup in flight") {
  L1Cache cache({100, std::chrono::seconds(30), std::chrono::seconds(5)});
  cache.put(hash_of(6), record("x"), cache.epoch(), t0);
  const auto started = cache.epoch();
  cache.invalidate_all();
  CHECK(cache.size() == 0);
  cache.put(hash_of(7), record("y"), started, t0);
  CHECK(cache.find(hash_of(7), t0).probe == L1Cache::Probe::miss);
}

TEST_CASE("the cache never holds more than max_entries") {
  L1Cache cache({64, std::chrono::seconds(30), std::chrono::seconds(5)});
  for (int i = 0; i < 1000; ++i) {
    KeyHash h = hash_of(static_cast<std::uint8_t>(i));
    h[0] = static_cast<std::uint8_t>(i >> 8);
    h[31] = static_cast<std::uint8_t>(i);  // spread over the shards
    cache.put(h, record("k"), cache.epoch(), t0);
  }
  CHECK(cache.size() <= 64);
  CHECK(cache.size() >= 32);
}

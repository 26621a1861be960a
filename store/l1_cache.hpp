#pragma once
// L1: the in-process cache of key records by hash, shared by every worker thread.
// Positive entries live `ttl`, negative ones (hash known not to exist) `negative_ttl`; the size
// is bounded. Sharded with one mutex per shard, so worker threads rarely meet on a lock.
// Invalidation (a revocation notice) is remembered per hash with a sequence number: a lookup
// of that hash that started before it may not put what it read, so a record read just before
// its revocation can never be cached after it. Other keys' lookups are not affected.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "store/key_record.hpp"

namespace keygate::store {

class L1Cache {
 public:
  using SteadyClock = std::chrono::steady_clock;

  struct Options {
    std::size_t max_entries = 200000;
    std::chrono::milliseconds ttl{30000};
    std::chrono::milliseconds negative_ttl{5000};
  };

  enum class Probe { miss, hit, known_absent };
  struct Found {
    Probe probe = Probe::miss;
    KeyRecordPtr record;  // set on hit
  };

  explicit L1Cache(Options options);

  Found find(const KeyHash& hash, SteadyClock::time_point now) const;
  // The epoch to pass to put/put_absent: read it before starting a lookup in the lower tiers.
  std::uint64_t epoch() const { return sequence_.load(std::memory_order_acquire); }
  // Stores `record` unless this hash (or everything) was invalidated since `epoch_at_start`.
  void put(const KeyHash& hash, KeyRecordPtr record, std::uint64_t epoch_at_start,
           SteadyClock::time_point now);
  void put_absent(const KeyHash& hash, std::uint64_t epoch_at_start, SteadyClock::time_point now);
  // Drops one hash (a revocation notice) / everything (notices may have been missed).
  void invalidate(const KeyHash& hash);
  void invalidate_all();

  // Until `until` (or trust_shared_cache), lookups of `hash` in this process skip the shared
  // cache (Redis): a revocation's marker is not written there yet, so the record Redis holds
  // may be the old one. The check costs one atomic load while nothing is distrusted.
  void distrust_shared_cache(const KeyHash& hash, SteadyClock::time_point until);
  void trust_shared_cache(const KeyHash& hash);
  bool shared_cache_trusted(const KeyHash& hash, SteadyClock::time_point now) const;

  std::size_t size() const;

 private:
  struct HashOfKeyHash {
    std::size_t operator()(const KeyHash& h) const noexcept;
  };
  struct Entry {
    KeyRecordPtr record;  // null: known absent
    SteadyClock::time_point expires;
  };
  struct Invalidation {
    std::uint64_t sequence;
    SteadyClock::time_point at;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<KeyHash, Entry, HashOfKeyHash> entries;
    // Recent invalidations, kept long enough to outlast any lookup in flight.
    std::unordered_map<KeyHash, Invalidation, HashOfKeyHash> invalidated;
    std::unordered_map<KeyHash, SteadyClock::time_point, HashOfKeyHash> distrusted;  // until
  };
  static constexpr std::size_t shard_count = 32;

  Shard& shard_for(const KeyHash& hash) const;
  void insert(const KeyHash& hash, Entry entry, std::uint64_t epoch_at_start,
              SteadyClock::time_point now);

  Options options_;
  std::size_t max_per_shard_;
  mutable std::array<Shard, shard_count> shards_;
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<std::uint64_t> all_invalidated_at_{0};
  std::atomic<std::size_t> distrusted_{0};  // entries in the shards' `distrusted`
};

}  // namespace keygate::store

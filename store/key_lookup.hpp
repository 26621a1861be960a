#pragma once
// The tiered key lookup: L1 (in-process) -> shared cache (Redis) -> source of truth
// (PostgreSQL), filling the upper tiers on the way back. One KeyLookup per worker thread; it
// coalesces concurrent misses for the same hash, so a burst of requests with one uncached key
// costs one PostgreSQL query per worker, not one per request.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "store/key_record.hpp"
#include "store/l1_cache.hpp"
#include "store/metrics.hpp"

namespace keygate::store {

struct LookupResult {
  enum class Status { found, not_found, error };
  Status status = Status::error;
  KeyRecordPtr record;  // set when found
  LookupTier tier = LookupTier::l1;  // the tier that answered
};

// What a tier below L1 (Redis, PostgreSQL) answers for one hash.
struct TierAnswer {
  enum class Status { found, not_found, unavailable };
  Status status = Status::unavailable;
  std::shared_ptr<KeyRecord> record;  // set when found
};

// The shared cache tier (Redis). Implementations never throw.
class SharedKeyCache {
 public:
  virtual ~SharedKeyCache() = default;
  // not_found: a miss (nothing cached, or an invalidation marker).
  virtual boost::asio::awaitable<TierAnswer> get(const KeyHash& hash) = 0;
  // Fills the cache in the background; never overwrites an invalidation marker.
  virtual void put(const KeyHash& hash, const KeyRecord& record) = 0;
  // Replaces the record with an invalidation marker; false if that could not be written.
  virtual boost::asio::awaitable<bool> invalidate(const KeyHash& hash) = 0;
};

// A key changed (revoked, deactivated, expired early, deleted): drop it from L1 and mark it in
// the shared cache. Until the marker is written, this process's lookups of the key skip the
// shared cache (which may still hold the old record) and read PostgreSQL; a marker that cannot
// be written (Redis away or reconnecting on this worker while other workers read it) is
// retried with backoff for up to `shared_record_ttl`, after which the old record has expired
// from Redis anyway. L1 is dropped again at the end, so nothing read in between stays.
// `shared_cache` may be null.
boost::asio::awaitable<void> forget_key(L1Cache& l1, SharedKeyCache* shared_cache, KeyHash hash,
                                        std::chrono::milliseconds shared_record_ttl);

// The source of truth (PostgreSQL). Implementations never throw. `presented_key` is the key as
// the client sent it, for tables that do not store keygate's hash (store.schema: custom, with
// bcrypt or plain credentials); it lives until the lookup returns and is never stored.
class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual boost::asio::awaitable<TierAnswer> find(const KeyHash& hash, std::string_view presented_key) = 0;
};

class KeyLookup {
 public:
  // `shared_cache` may be null (no Redis configured). `l1` is shared by all workers.
  KeyLookup(boost::asio::any_io_executor executor, L1Cache& l1, SharedKeyCache* shared_cache,
            KeySource& source);
  ~KeyLookup();

  // `presented_key` reaches the source only (see KeySource); the caches know the hash alone.
  boost::asio::awaitable<LookupResult> lookup(const KeyHash& hash, std::string_view presented_key = {});

 private:
  struct Pending;
  struct HashOfKeyHash {
    std::size_t operator()(const KeyHash& h) const noexcept;
  };

  boost::asio::awaitable<LookupResult> lookup_lower_tiers(const KeyHash& hash, std::string_view presented_key);

  boost::asio::any_io_executor executor_;
  L1Cache& l1_;
  SharedKeyCache* shared_cache_;
  KeySource& source_;
  std::unordered_map<KeyHash, std::shared_ptr<Pending>, HashOfKeyHash> pending_;
};

}  // namespace keygate::store

#pragma once
// KeyLookup's shared cache tier in Redis: records under "kg:key:<hex hash>" with a TTL.
// A changed key is replaced by an invalidation marker for a while, and fills use SET NX, so a
// lookup that read PostgreSQL just before a revocation cannot put the old record back.
#include <boost/asio/any_io_executor.hpp>

#include <chrono>

#include "store/key_lookup.hpp"

namespace keygate::store {

class RedisCommands;

class RedisKeyCache final : public SharedKeyCache {
 public:
  // `executor`: the worker's, on which `redis` runs.
  RedisKeyCache(boost::asio::any_io_executor executor, RedisCommands& redis,
                std::chrono::milliseconds record_ttl);

  boost::asio::awaitable<TierAnswer> get(const KeyHash& hash) override;
  void put(const KeyHash& hash, const KeyRecord& record) override;
  // Replaces the record with the marker (awaits the write: revocation wants it done).
  boost::asio::awaitable<bool> invalidate(const KeyHash& hash) override;

  // Longer than any PostgreSQL read that could race a revocation (query timeouts are seconds).
  static constexpr std::chrono::seconds marker_ttl{60};

 private:
  boost::asio::any_io_executor executor_;
  RedisCommands& redis_;
  std::string ttl_seconds_;
};

}  // namespace keygate::store

#include "store/redis_key_cache.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <array>

#include "store/key_record_codec.hpp"
#include "store/redis_commands.hpp"

namespace keygate::store {
namespace asio = boost::asio;

namespace {
constexpr std::string_view invalidation_marker = "!revoked";
}

RedisKeyCache::RedisKeyCache(asio::any_io_executor executor, RedisCommands& redis,
                             std::chrono::milliseconds record_ttl)
    : executor_(std::move(executor)),
      redis_(redis),
      ttl_seconds_(std::to_string(std::max<long long>(
          1, std::chrono::duration_cast<std::chrono::seconds>(record_ttl).count()))) {}

asio::awaitable<TierAnswer> RedisKeyCache::get(const KeyHash& hash) {
  const std::string key = redis_record_key(hash);
  const std::array<std::string_view, 2> argv{"GET", key};
  RedisResult result = co_await redis_.command(argv);
  if (!result.ok() || result.reply.kind == RedisReply::Kind::error) {
    co_return TierAnswer{TierAnswer::Status::unavailable, nullptr};
  }
  if (result.reply.kind != RedisReply::Kind::string) co_return TierAnswer{TierAnswer::Status::not_found, nullptr};
  std::optional<KeyRecord> record = decode_key_record(result.reply.str);
  if (!record) co_return TierAnswer{TierAnswer::Status::not_found, nullptr};  // the marker, or another version's form
  co_return TierAnswer{TierAnswer::Status::found, std::make_shared<KeyRecord>(std::move(*record))};
}

void RedisKeyCache::put(const KeyHash& hash, const KeyRecord& record) {
  // In the background: the request that read PostgreSQL need not wait for Redis.
  asio::co_spawn(
      executor_,
      [this, key = redis_record_key(hash), value = encode_key_record(record)]() -> asio::awaitable<void> {
        const std::array<std::string_view, 6> argv{"SET", key, value, "EX", ttl_seconds_, "NX"};
        co_await redis_.command(argv);
      },
      asio::detached);
}

asio::awaitable<bool> RedisKeyCache::invalidate(const KeyHash& hash) {
  const std::string key = redis_record_key(hash);
  const std::string ttl = std::to_string(marker_ttl.count());
  const std::array<std::string_view, 5> argv{"SET", key, invalidation_marker, "EX", ttl};
  RedisResult result = co_await redis_.command(argv);
  co_return result.ok() && result.reply.kind != RedisReply::Kind::error;
}

}  // namespace keygate::store

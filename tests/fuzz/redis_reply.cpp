// What keygate reads from Redis: bytes in any split go through hiredis' reader, the same reply
// functions keygate's connections use (store/redis_reply.hpp), and the checks keygate applies to
// a reply (the sliding-window script's answer, a cached key record, a cluster's slot map and
// redirections). A hostile or broken server may get an error, never a crash or an unbounded
// allocation.
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_check.hpp"
#include "store/key_record_codec.hpp"
#include "store/redis_cluster_slots.hpp"
#include "store/redis_rate_counter.hpp"
#include "store/redis_reply.hpp"

namespace {

struct ReaderFree {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};

void check(const keygate::store::RedisReply& reply) {
  using keygate::store::RedisReply;
  keygate::store::RedisResult result{keygate::store::RedisErrc::ok, reply};
  for (std::int64_t buckets : {1, 2, 10}) {
    const auto parsed = keygate::store::parse_window_script_reply(result, buckets);
    if (!parsed.ok) continue;
    FUZZ_CHECK(parsed.result.previous >= 0 && parsed.result.current >= 0);
    FUZZ_CHECK(parsed.result.granted >= 0);
  }
  if (reply.kind == RedisReply::Kind::string) (void)keygate::store::decode_key_record(reply.str);
  // A cluster node's answers: its slot map, and its redirections.
  std::string error;
  if (const auto map = keygate::store::parse_cluster_slots(reply, "10.0.0.1", &error)) {
    FUZZ_CHECK(map->covered_slots() <= keygate::store::cluster_slot_count);
    for (std::uint16_t slot = 0; slot < keygate::store::cluster_slot_count; slot += 1000) {
      const std::uint16_t owner = map->owner(slot);
      FUZZ_CHECK(owner == keygate::store::RedisSlotMap::no_master || owner < map->masters().size());
    }
  } else {
    FUZZ_CHECK(!error.empty());
  }
  if (const auto redirect = keygate::store::parse_redirect(reply, "10.0.0.1")) {
    FUZZ_CHECK(redirect->slot < keygate::store::cluster_slot_count);
    FUZZ_CHECK(redirect->target.port != 0 && !redirect->target.host.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t chunk = data[0] % 64 + 1;  // how the bytes arrive
  ++data;
  --size;
  std::unique_ptr<redisReader, ReaderFree> reader(keygate::store::create_reply_reader());
  FUZZ_CHECK(reader != nullptr);
  for (std::size_t at = 0; at < size;) {
    const std::size_t n = std::min(chunk, size - at);
    if (redisReaderFeed(reader.get(), reinterpret_cast<const char*>(data + at), n) != REDIS_OK) return 0;
    at += n;
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) return 0;  // a protocol error
      if (raw == nullptr) break;  // needs more bytes
      auto* reply = static_cast<redisReply*>(raw);
      check(keygate::store::copy_reply(*reply));
      freeReplyObject(reply);
    }
  }
  return 0;
}

#pragma once
// The pure part of Redis Cluster support (no I/O): the slot a key hashes to, the slot map read
// from CLUSTER SLOTS, the MOVED / ASK redirections, and which argument of a command is the key
// it is routed by. store/redis_cluster.hpp does the I/O with them.
//
// The rules are the Redis Cluster specification's (https://redis.io/docs/reference/cluster-spec/):
// slot = CRC16-XMODEM(key) mod 16384, where only the part between the first '{' and the first
// '}' after it is hashed when that part is not empty ("hash tag").
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/redis_options.hpp"  // RedisEndpoint
#include "store/redis_reply.hpp"

namespace keygate::store {

inline constexpr std::uint16_t cluster_slot_count = 16384;

// CRC16 as Redis Cluster uses it (XMODEM: poly 0x1021, init 0, no reflection): "123456789" -> 0x31C3.
std::uint16_t crc16_xmodem(std::string_view bytes);
// The bytes of `key` that decide its slot: the hash tag when it has a non-empty one, else all.
std::string_view hash_tag_of(std::string_view key);
std::uint16_t key_slot(std::string_view key);

// The key a command is routed by: argv[1] for ordinary commands, KEYS[1] for EVAL/EVALSHA/FCALL,
// nullopt for commands without a key (PING, PUBLISH, INFO, CLUSTER ..., and EVAL with 0 keys),
// which any node answers.
std::optional<std::string_view> routing_key(std::span<const std::string_view> argv);

// "-MOVED 3999 127.0.0.1:6381" or "-ASK 3999 127.0.0.1:6381". An empty host (":6381": the node
// does not know its own address) means the host of the node that answered, `answered_by`.
struct RedisRedirect {
  enum class Kind { moved, ask };
  Kind kind = Kind::moved;
  std::uint16_t slot = 0;
  RedisEndpoint target;
};
// nullopt for any reply that is not a well-formed MOVED or ASK error.
std::optional<RedisRedirect> parse_redirect(const RedisReply& reply, std::string_view answered_by);

// Which master serves each slot. Masters are numbered in the order they were first seen; a
// slot no master serves (not in CLUSTER SLOTS, or an unusable "?" endpoint) has no_master.
class RedisSlotMap {
 public:
  static constexpr std::uint16_t no_master = 0xFFFF;

  RedisSlotMap() : owners_(cluster_slot_count, no_master) {}

  std::uint16_t owner(std::uint16_t slot) const { return owners_[slot % cluster_slot_count]; }
  const std::vector<RedisEndpoint>& masters() const { return masters_; }
  // Every replica CLUSTER SLOTS named: more nodes to ask for the map when no master answers.
  const std::vector<RedisEndpoint>& replicas() const { return replicas_; }
  std::size_t covered_slots() const;

  // The master's number, added when it is new (at most no_master - 1 of them).
  std::uint16_t add_master(const RedisEndpoint& master);
  // `slot` is now `master`'s (after a MOVED); returns the master's number.
  std::uint16_t assign(std::uint16_t slot, const RedisEndpoint& master);
  void assign_range(std::uint16_t first, std::uint16_t last, std::uint16_t master);
  void add_replica(const RedisEndpoint& replica);

  bool operator==(const RedisSlotMap&) const = default;

 private:
  std::vector<std::uint16_t> owners_;  // slot -> index into masters_
  std::vector<RedisEndpoint> masters_;
  std::vector<RedisEndpoint> replicas_;
};

// A CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], [replica...]...], ...].
// A NULL or empty host means the host the command was sent to (`queried_host`); a "?" host
// (unknown endpoint) leaves its range unserved. nullopt, and a one-line *error, when the reply
// does not have that shape.
std::optional<RedisSlotMap> parse_cluster_slots(const RedisReply& reply,
                                                std::string_view queried_host, std::string* error);

// "host:port", "[v6]:port" (and the unbracketed "v6:port" of MOVED replies: split at the last
// ':'); nullopt when there is no port from 1 to 65535 or the host is not a name or address.
std::optional<RedisEndpoint> parse_endpoint(std::string_view text);

}  // namespace keygate::store

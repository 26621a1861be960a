// store/redis_cluster_slots.hpp: key slots, CLUSTER SLOTS replies, MOVED / ASK, routing keys.
// Replies are made by hiredis' own RESP reader from the bytes a server sends.
#include <doctest/doctest.h>

#include <hiredis/hiredis.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "authz/rate_policy.hpp"
#include "store/redis_rate_counter.hpp"
#include "store/redis_cluster_slots.hpp"

using keygate::store::cluster_slot_count;
using keygate::store::crc16_xmodem;
using keygate::store::hash_tag_of;
using keygate::store::key_slot;
using keygate::store::parse_cluster_slots;
using keygate::store::parse_endpoint;
using keygate::store::parse_redirect;
using keygate::store::RedisEndpoint;
using keygate::store::RedisRedirect;
using keygate::store::RedisReply;
using keygate::store::RedisSlotMap;
using keygate::store::routing_key;

namespace {

RedisReply reply_from(std::string_view resp) {
  const std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader(redisReaderCreate(),
                                                                         &redisReaderFree);
  REQUIRE(reader != nullptr);
  REQUIRE(redisReaderFeed(reader.get(), resp.data(), resp.size()) == REDIS_OK);
  void* parsed = nullptr;
  REQUIRE(redisReaderGetReply(reader.get(), &parsed) == REDIS_OK);
  REQUIRE(parsed != nullptr);
  RedisReply copy = keygate::store::copy_reply(*static_cast<const redisReply*>(parsed));
  freeReplyObject(parsed);
  return copy;
}

RedisReply error_reply(std::string text) {
  RedisReply reply;
  reply.kind = RedisReply::Kind::error;
  reply.str = std::move(text);
  return reply;
}

template <std::size_t N>
std::optional<std::string_view> key_of(const std::array<std::string_view, N>& argv) {
  return routing_key(argv);
}

// A node as CLUSTER SLOTS gives it: [host, port, id].
std::string node(std::string_view host, int port) {
  const std::string port_text = std::to_string(port);
  return "*3\r\n$" + std::to_string(host.size()) + "\r\n" + std::string(host) + "\r\n:" +
         port_text + "\r\n$4\r\nid-" + port_text.substr(port_text.size() - 1) + "\r\n";
}

}  // namespace

TEST_CASE("redis cluster: CRC16 and key slots are the specification's") {
  CHECK(crc16_xmodem("123456789") == 0x31C3);
  CHECK(crc16_xmodem("") == 0);
  CHECK(key_slot("123456789") == 12739);
  // As CLUSTER KEYSLOT answers (redis-server 7.0).
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("bar") == 5061);
  CHECK(key_slot("hello") == 866);
  CHECK(key_slot("") == 0);
  for (const std::string_view key : {"a", "kg:key:00ff", "\xff\xfe binary"}) {
    CHECK(key_slot(key) < cluster_slot_count);
  }
}

TEST_CASE("redis cluster: hash tags follow the first '{' and the first '}' after it") {
  CHECK(hash_tag_of("{user1000}.following") == "user1000");
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(key_slot("{user1000}.following") == key_slot("user1000"));
  CHECK(hash_tag_of("foo{}{bar}") == "foo{}{bar}");  // empty tag: the whole key
  CHECK(hash_tag_of("foo{{bar}}zap") == "{bar");
  CHECK(hash_tag_of("foo{bar}{zap}") == "bar");
  CHECK(hash_tag_of("no tag") == "no tag");
  CHECK(hash_tag_of("open{only") == "open{only");
  CHECK(hash_tag_of("close}only{") == "close}only{");
  CHECK(hash_tag_of("}{x}") == "x");
}

TEST_CASE("redis cluster: a key's rate-limit counters and quota count share one slot") {
  // The sliding-window script takes both in one call; a cluster refuses keys of two slots.
  keygate::store::KeyRecord key;
  key.id = "3f1c0000-aaaa-bbbb-cccc-000000000001";
  key.rate_limit = 10;
  key.window_seconds = 60;
  const auto policy = keygate::authz::choose_policy(key, nullptr, {100, 60});
  const std::string counter = keygate::authz::counter_name(key, nullptr, policy);
  const std::string quota = keygate::store::quota_key_name(counter, 1733270400);
  CHECK(quota == "kg:q:{" + key.id + "}:1733270400");  // the name native keys always had
  CHECK(key_slot(counter) == key_slot(quota));
  CHECK(key_slot(counter) == key_slot(key.id));
  // A custom table's namespace is in the counter's tag, and so in the quota's.
  const std::string custom = keygate::authz::counter_name(key, nullptr, policy, "c:api_keys@kg:");
  CHECK(key_slot(custom) == key_slot(keygate::store::quota_key_name(custom, 0)));
  CHECK(key_slot(custom) != key_slot(counter));
}

TEST_CASE("redis cluster: commands are routed by their first key, scripts by KEYS[1]") {
  CHECK(key_of(std::array<std::string_view, 2>{"GET", "k"}) == "k");
  CHECK(key_of(std::array<std::string_view, 6>{"SET", "k", "v", "EX", "5", "NX"}) == "k");
  CHECK(key_of(std::array<std::string_view, 5>{"EVALSHA", "abc", "2", "k1", "k2"}) == "k1");
  CHECK(key_of(std::array<std::string_view, 4>{"eval", "return 1", "1", "k"}) == "k");
  CHECK_FALSE(key_of(std::array<std::string_view, 4>{"EVAL", "return 1", "0", "arg"}));
  CHECK_FALSE(key_of(std::array<std::string_view, 3>{"EVALSHA", "abc", "1"}));
  CHECK_FALSE(key_of(std::array<std::string_view, 1>{"PING"}));
  CHECK_FALSE(key_of(std::array<std::string_view, 3>{"PUBLISH", "channel", "message"}));
  CHECK_FALSE(key_of(std::array<std::string_view, 2>{"INFO", "commandstats"}));
  CHECK_FALSE(key_of(std::array<std::string_view, 2>{"cluster", "slots"}));
}

TEST_CASE("redis cluster: MOVED and ASK errors parse into a slot and a node") {
  auto moved = parse_redirect(error_reply("MOVED 3999 127.0.0.1:6381"), "10.0.0.1");
  REQUIRE(moved);
  CHECK(moved->kind == RedisRedirect::Kind::moved);
  CHECK(moved->slot == 3999);
  CHECK(moved->target == RedisEndpoint{"127.0.0.1", 6381});

  auto ask = parse_redirect(error_reply("ASK 16383 cache-2.internal:7002"), "10.0.0.1");
  REQUIRE(ask);
  CHECK(ask->kind == RedisRedirect::Kind::ask);
  CHECK(ask->slot == 16383);
  CHECK(ask->target == RedisEndpoint{"cache-2.internal", 7002});

  // An unknown endpoint: the node that answered, on the port given.
  auto same_host = parse_redirect(error_reply("MOVED 0 :7005"), "10.0.0.1");
  REQUIRE(same_host);
  CHECK(same_host->target == RedisEndpoint{"10.0.0.1", 7005});

  // IPv6, as Redis writes it (no brackets), and bracketed.
  auto v6 = parse_redirect(error_reply("MOVED 12 ::1:7000"), "");
  REQUIRE(v6);
  CHECK(v6->target == RedisEndpoint{"::1", 7000});
  auto v6_bracketed = parse_redirect(error_reply("ASK 12 [fe80::1]:7000"), "");
  REQUIRE(v6_bracketed);
  CHECK(v6_bracketed->target == RedisEndpoint{"fe80::1", 7000});

  // Anything else is not a redirection.
  for (const char* text : {"MOVED", "MOVED 3999", "MOVED 16384 127.0.0.1:6381", "MOVED -1 h:1",
                           "MOVED 1 127.0.0.1", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:65536",
                           "MOVED 1 host:6379 extra", "MOVEDX 1 h:1", "ASKING 1 h:1", "ERR MOVED 1 h:1",
                           "MOVED 1 :7000", "MOVED x h:1", "ASK 1 bad/host:1", "CLUSTERDOWN The cluster is down"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_redirect(error_reply(text), ""));
  }
  RedisReply not_error;
  not_error.kind = RedisReply::Kind::status;
  not_error.str = "MOVED 1 h:1";
  CHECK_FALSE(parse_redirect(not_error, "h"));
}

TEST_CASE("redis cluster: endpoints are host:port, IPv6 in brackets or before the last ':'") {
  CHECK(parse_endpoint("127.0.0.1:7000") == RedisEndpoint{"127.0.0.1", 7000});
  CHECK(parse_endpoint("[::1]:7000") == RedisEndpoint{"::1", 7000});
  CHECK(parse_endpoint("redis-0.redis:6379") == RedisEndpoint{"redis-0.redis", 6379});
  CHECK_FALSE(parse_endpoint("127.0.0.1"));
  CHECK_FALSE(parse_endpoint(":7000"));
  CHECK_FALSE(parse_endpoint("[127.0.0.1]:7000"));
  CHECK_FALSE(parse_endpoint("[::1]7000"));
  CHECK_FALSE(parse_endpoint("host:"));
  CHECK_FALSE(parse_endpoint("host:port"));
  CHECK_FALSE(parse_endpoint("ho st:1"));
  CHECK(RedisEndpoint{"::1", 7000}.to_string() == "[::1]:7000");
  CHECK(RedisEndpoint{"10.0.0.1", 7000}.to_string() == "10.0.0.1:7000");
}

TEST_CASE("redis cluster: CLUSTER SLOTS becomes a map of every slot to its master") {
  // Three masters, each with one replica (the shape redis-cli --cluster create makes).
  const std::string resp = "*3\r\n"
                           "*4\r\n:0\r\n:5460\r\n" + node("127.0.0.1", 7000) + node("127.0.0.1", 7004) +
                           "*4\r\n:5461\r\n:10922\r\n" + node("127.0.0.1", 7001) + node("127.0.0.1", 7005) +
                           "*4\r\n:10923\r\n:16383\r\n" + node("127.0.0.1", 7002) + node("127.0.0.1", 7003);
  std::string error;
  const auto map = parse_cluster_slots(reply_from(resp), "127.0.0.1", &error);
  REQUIRE_MESSAGE(map, error);
  CHECK(map->covered_slots() == cluster_slot_count);
  REQUIRE(map->masters().size() == 3);
  CHECK(map->masters()[map->owner(0)] == RedisEndpoint{"127.0.0.1", 7000});
  CHECK(map->masters()[map->owner(5460)] == RedisEndpoint{"127.0.0.1", 7000});
  CHECK(map->masters()[map->owner(5461)] == RedisEndpoint{"127.0.0.1", 7001});
  CHECK(map->masters()[map->owner(key_slot("123456789"))] == RedisEndpoint{"127.0.0.1", 7002});
  CHECK(map->masters()[map->owner(16383)] == RedisEndpoint{"127.0.0.1", 7002});
  CHECK(map->replicas().size() == 3);

  // A MOVED gives one slot to another master.
  RedisSlotMap moved = *map;
  const auto index = moved.assign(100, RedisEndpoint{"127.0.0.1", 7002});
  CHECK(moved.masters()[index] == RedisEndpoint{"127.0.0.1", 7002});
  CHECK(moved.owner(100) == index);
  CHECK(moved.owner(101) == map->owner(101));
  const auto added = moved.assign(101, RedisEndpoint{"127.0.0.1", 7010});
  CHECK(added == 3);
  CHECK(moved.masters().size() == 4);
}

TEST_CASE("redis cluster: CLUSTER SLOTS with holes, NULL and unknown endpoints") {
  // A master with a NULL endpoint is on the host asked; "?" is unusable: its range unserved.
  const std::string resp = "*3\r\n"
                           "*3\r\n:0\r\n:99\r\n*3\r\n$-1\r\n:7000\r\n$2\r\nid\r\n"
                           "*3\r\n:100\r\n:199\r\n*3\r\n$1\r\n?\r\n:7001\r\n$2\r\nid\r\n"
                           "*3\r\n:300\r\n:300\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n";
  std::string error;
  const auto map = parse_cluster_slots(reply_from(resp), "10.1.2.3", &error);
  REQUIRE_MESSAGE(map, error);
  CHECK(map->covered_slots() == 101);
  CHECK(map->masters()[map->owner(0)] == RedisEndpoint{"10.1.2.3", 7000});
  CHECK(map->owner(150) == RedisSlotMap::no_master);
  CHECK(map->owner(200) == RedisSlotMap::no_master);
  CHECK(map->masters()[map->owner(300)] == RedisEndpoint{"10.1.2.3", 7002});

  // A cluster with no slots assigned yet is a valid, empty map.
  const auto empty = parse_cluster_slots(reply_from("*0\r\n"), "h", &error);
  REQUIRE(empty);
  CHECK(empty->covered_slots() == 0);
}

TEST_CASE("redis cluster: a reply that is not CLUSTER SLOTS' shape is refused with a reason") {
  std::string error;
  CHECK_FALSE(parse_cluster_slots(error_reply("ERR This instance has cluster support disabled"), "h", &error));
  CHECK(error == "CLUSTER SLOTS: refused: ERR This instance has cluster support disabled");
  CHECK_FALSE(parse_cluster_slots(reply_from("+OK\r\n"), "h", &error));
  CHECK(error == "CLUSTER SLOTS: expected an array of slot ranges");
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*2\r\n:0\r\n:1\r\n"), "h", &error));
  CHECK(error == "CLUSTER SLOTS: range 1: expected [first slot, last slot, master, replicas...]");
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*3\r\n:5\r\n:4\r\n" + node("h", 1)), "h", &error));
  CHECK(error == "CLUSTER SLOTS: range 1: slots 5-4 are not within 0-16383");
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*3\r\n:0\r\n:16384\r\n" + node("h", 1)), "h", &error));
  CHECK(error == "CLUSTER SLOTS: range 1: slots 0-16384 are not within 0-16383");
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n:1\r\n"), "h", &error));
  CHECK(error == "CLUSTER SLOTS: range 1: malformed master [host, port, id]");
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na b\r\n:1\r\n"), "h", &error));
  CHECK_FALSE(parse_cluster_slots(reply_from("*1\r\n*4\r\n:0\r\n:1\r\n" + node("h", 1) + ":5\r\n"), "h", &error));
  CHECK(error == "CLUSTER SLOTS: range 1: malformed replica");
}

// store/redis_options.hpp and store/redis_reply.hpp: the redis:// URL form and the copy of
// hiredis' replies, with no server (replies are made by hiredis' own RESP reader).
#include <doctest/doctest.h>

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <string_view>

#include "store/redis_options.hpp"
#include "store/redis_reply.hpp"

using keygate::store::copy_reply;
using keygate::store::parse_redis_url;
using keygate::store::RedisReply;

namespace {

// One reply parsed from RESP bytes, copied, and hiredis' own freed.
RedisReply reply_from(std::string_view resp) {
  const std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader(redisReaderCreate(),
                                                                         &redisReaderFree);
  REQUIRE(reader != nullptr);
  REQUIRE(redisReaderFeed(reader.get(), resp.data(), resp.size()) == REDIS_OK);
  void* parsed = nullptr;
  REQUIRE(redisReaderGetReply(reader.get(), &parsed) == REDIS_OK);
  REQUIRE(parsed != nullptr);
  RedisReply copy = copy_reply(*static_cast<const redisReply*>(parsed));
  freeReplyObject(parsed);
  return copy;
}

}  // namespace

TEST_CASE("redis: URLs parse into options, bad ones give a one-line reason without secrets") {
  std::string error;
  auto plain = parse_redis_url("redis://127.0.0.1:6379", &error);
  REQUIRE(plain.has_value());
  CHECK(plain->host == "127.0.0.1");
  CHECK(plain->port == 6379);
  CHECK(plain->password.empty());
  CHECK(plain->database == 0);

  auto no_port = parse_redis_url("redis://cache.internal", &error);
  REQUIRE(no_port.has_value());
  CHECK(no_port->host == "cache.internal");
  CHECK(no_port->port == 6379);

  auto full = parse_redis_url("redis://:s3cret@localhost:6380/2", &error);
  REQUIRE(full.has_value());
  CHECK(full->host == "localhost");
  CHECK(full->port == 6380);
  CHECK(full->username.empty());
  CHECK(full->password == "s3cret");
  CHECK(full->database == 2);

  auto acl = parse_redis_url("REDIS://keygate:p%40ss%2Fw@[::1]:7000/", &error);
  REQUIRE(acl.has_value());
  CHECK(acl->host == "::1");
  CHECK(acl->port == 7000);
  CHECK(acl->username == "keygate");
  CHECK(acl->password == "p@ss/w");
  CHECK(acl->database == 0);

  auto raw_at = parse_redis_url("redis://:pa@ss@host", &error);
  REQUIRE(raw_at.has_value());
  CHECK(raw_at->password == "pa@ss");
  CHECK(raw_at->host == "host");

  const char* const bad[] = {
      "",
      "http://127.0.0.1:6379",
      "rediss://127.0.0.1:6379",
      "redis://",
      "redis://:6379",
      "redis://host:",
      "redis://host:0",
      "redis://host:65536",
      "redis://host:63x9",
      "redis://host/x",
      "redis://host/-1",
      "redis://host?db=1",
      "redis://s3cret@host",
      "redis://::1:6379",
      "redis://[::1",
      "redis://[not-v6]:6379",
      "redis://:p%zz@host",
      "redis://:@host",
      "redis://ho st:6379",
      "redis://:s3cret@host:99999",
  };
  for (const char* url : bad) {
    CAPTURE(url);
    error.clear();
    CHECK_FALSE(parse_redis_url(url, &error).has_value());
    CHECK_FALSE(error.empty());
    CHECK(error.find('\n') == std::string::npos);
    CHECK(error.find("s3cret") == std::string::npos);
  }
  CHECK_FALSE(parse_redis_url("redis://host:0", nullptr).has_value());
}

TEST_CASE("redis: a host name is kept as given, to be resolved when connecting") {
  std::string error;
  auto named = parse_redis_url("redis://kg-redis.test:6390", &error);
  REQUIRE(named.has_value());
  CHECK(named->host == "kg-redis.test");
  CHECK(named->port == 6390);
}

TEST_CASE("redis: every reply kind is copied into an owned value") {
  const RedisReply status = reply_from("+OK\r\n");
  CHECK(status.kind == RedisReply::Kind::status);
  CHECK(status.str == "OK");

  const RedisReply error = reply_from("-NOSCRIPT No matching script\r\n");
  CHECK(error.kind == RedisReply::Kind::error);
  CHECK(error.is_error_code("NOSCRIPT"));
  CHECK_FALSE(error.is_error_code("NOSCRIP"));
  CHECK_FALSE(error.is_error_code("ERR"));

  const RedisReply integer = reply_from(":-42\r\n");
  CHECK(integer.kind == RedisReply::Kind::integer);
  CHECK(integer.integer == -42);

  CHECK(reply_from("$-1\r\n").is_nil());

  const RedisReply binary = reply_from(std::string_view("$5\r\na\0b\r\n\r\n", 11));
  CHECK(binary.kind == RedisReply::Kind::string);
  CHECK(binary.str == std::string_view("a\0b\r\n", 5));

  const RedisReply nested = reply_from("*3\r\n$1\r\nx\r\n*2\r\n:1\r\n$-1\r\n*0\r\n");
  REQUIRE(nested.kind == RedisReply::Kind::array);
  REQUIRE(nested.elements.size() == 3);
  CHECK(nested.elements[0].str == "x");
  REQUIRE(nested.elements[1].elements.size() == 2);
  CHECK(nested.elements[1].elements[0].integer == 1);
  CHECK(nested.elements[1].elements[1].is_nil());
  CHECK(nested.elements[2].kind == RedisReply::Kind::array);
  CHECK(nested.elements[2].elements.empty());
}

// Regression tests for what ./scripts/fuzz found (tests/fuzz/), each named after the shape of
// the input that found it and checking the property that failed.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "authz/request_path.hpp"
#include "store/key_record_codec.hpp"
#include "store/redis_rate_counter.hpp"
#include "store/redis_reply.hpp"

namespace {

std::string config_error(const std::string& yaml) {
  try {
    (void)keygate::app::parse_config(yaml, "config.yaml", {});
  } catch (const keygate::app::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// The sliding-window script's answer for a refused request, as Redis sends it: status 0, quota
// -1, granted 0, then buckets + 1 counts.
keygate::store::RedisResult window_reply(const std::vector<long long>& counts) {
  using keygate::store::RedisReply;
  keygate::store::RedisResult result{keygate::store::RedisErrc::ok, {}};
  result.reply.kind = RedisReply::Kind::array;
  std::vector<long long> values{0, -1, 0};
  values.insert(values.end(), counts.begin(), counts.end());
  for (const long long n : values) {
    RedisReply& element = result.reply.elements.emplace_back();
    element.kind = RedisReply::Kind::integer;
    element.integer = n;
  }
  return result;
}

}  // namespace

TEST_SUITE("fuzz findings") {

TEST_CASE("config: a control byte where yaml-cpp expects an escape is answered on one line") {
  // yaml-cpp's own message quotes the byte it did not expect (found as "+\x17\0\n", which the
  // UTF-8 check below now refuses first).
  const std::string error = config_error("a: \"\\\x17\"\n");
  CHECK(error == "config.yaml:1: invalid YAML: unknown escape character: \\x17");
  for (const char c : error) CHECK(static_cast<unsigned char>(c) >= 0x20);
}

TEST_CASE("config: NUL bytes first (yaml-cpp reads UTF-32) are refused as not UTF-8, at once") {
  // "\0\0\0,..." made yaml-cpp 0.7 decode the file as UTF-32 and allocate until bad_alloc.
  constexpr char bytes[] = "\0\0\0,\x13ral}\nb: ${EMPTY:-x\x13\x13\x13}\n";
  const std::string text(bytes, sizeof bytes - 1);  // the NULs included, not the final one
  const std::string error = config_error(text);
  CHECK(error == "config.yaml:1: not UTF-8 text (a NUL byte at byte 1): save the file as UTF-8");
  CHECK(config_error("mode: proxy\nlisten: \xff\xfe\n") ==
        "config.yaml:2: not UTF-8 text (a malformed UTF-8 sequence at byte 21): save the file as UTF-8");
  // A UTF-8 byte order mark and UTF-8 text are fine.
  CHECK(config_error("\xef\xbb\xbfmode: proxy\n# caf\xc3\xa9\n") == "(no error)");
}

TEST_CASE("key_record: an expiry past what system_clock holds (18934560001000008 us) is not a record") {
  // Converting it to nanoseconds overflowed (UBSan: signed integer overflow in chrono).
  CHECK_FALSE(keygate::store::decode_key_record("kr2;1:k0:0:0:0;0;~;~;~;~;1;18934560001000008;~;"));
  CHECK_FALSE(keygate::store::decode_key_record("kr2;1:k0:0:0:0;0;~;~;~;~;1;~;-9223372036854775807;"));
  const auto kept = keygate::store::decode_key_record("kr2;1:k0:0:0:0;0;~;~;~;~;1;1893456000000000;~;");
  REQUIRE(kept);
  CHECK(kept->expires_at.has_value());
}

TEST_CASE("redis_reply: a window reply whose bucket count is INT64_MIN or negative is refused") {
  // The sum of the counts overflowed, and a negative count would have let requests through.
  const long long min = std::numeric_limits<long long>::min();
  CHECK_FALSE(keygate::store::parse_window_script_reply(window_reply({5, 5, min}), 2).ok);
  CHECK_FALSE(keygate::store::parse_window_script_reply(window_reply({5, -1, 5}), 2).ok);
  CHECK_FALSE(keygate::store::parse_window_script_reply(window_reply({std::int64_t{1} << 62, 1, 1}), 2).ok);
  const auto fine = keygate::store::parse_window_script_reply(window_reply({5, 3, 4}), 2);
  REQUIRE(fine.ok);
  CHECK(fine.result.previous == 5);
  CHECK(fine.result.current == 7);
}

TEST_CASE("config: a file of just ',' (yaml-cpp's LoadAll never ended) is invalid YAML, at once") {
  // yaml-cpp 0.7 yielded empty documents at the same place forever, allocating until bad_alloc.
  CHECK(config_error(",") == "config.yaml:1: invalid YAML: unexpected \",\"");
  CHECK(config_error(",imits:\n  trusted_proxies: [10.0.0.0/8, 1::]\n") ==
        "config.yaml:1: invalid YAML: unexpected \",\"");
  CHECK(config_error("mode: proxy\n---\nmode: authz\n") ==
        "config.yaml:3: only one YAML document is allowed");
  CHECK(config_error("# nothing but a comment\n") == "(no error)");
}

TEST_CASE("request_head: a 5,600-byte target with 1,657 raw non-ASCII bytes is too long once %-encoded") {
  // Normalized, it grew past max_target_length: the upstream would have been sent a target
  // keygate itself answers 414.
  const std::string target = "/" + std::string(3000, '\xe1') + "?q=1";
  REQUIRE(target.size() < keygate::authz::max_target_length);
  keygate::authz::PathError error = keygate::authz::PathError::none;
  CHECK_FALSE(keygate::authz::normalize_target(target, &error));
  CHECK(error == keygate::authz::PathError::too_long);
  const auto fits = keygate::authz::normalize_target("/" + std::string(2000, '\xe1'));
  REQUIRE(fits);
  CHECK(fits->path.size() == 6001);
}

}

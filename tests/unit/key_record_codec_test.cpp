// The Redis form of a key record: every field round-trips, and anything that is not a record of
// this version (truncated, corrupt, the old JSON form, the invalidation marker) is a miss.
#include <doctest/doctest.h>

#include <string>

#include "store/key_record_codec.hpp"

using namespace keygate::store;
using keygate::core::IpNetwork;

namespace {

KeyRecord full_record() {
  KeyRecord r;
  r.id = "3f1c9b2e-7d4a-4c1e-9a7b-0d2e5f6a7b8c";
  r.owner_type = "team";
  r.owner_id = "acme:42;with:colons;and\nnewline~";
  r.name = "ci deploy key \xc3\xa9";
  r.scopes = {"inventory:read", "inventory:write", ""};
  r.allowed_ips = {*IpNetwork::parse("10.0.0.0/8"), *IpNetwork::parse("2001:db8::/32")};
  r.rate_limit = 1000;
  r.window_seconds = 60;
  r.quota = 5'000'000'000;
  r.quota_period_seconds = 86400;
  r.is_active = false;
  r.expires_at = TimePoint(std::chrono::microseconds(1'700'000'000'123'456));
  r.revoked_at = TimePoint(std::chrono::microseconds(-5));
  return r;
}

void check_same(const KeyRecord& a, const KeyRecord& b) {
  CHECK(a.id == b.id);
  CHECK(a.owner_type == b.owner_type);
  CHECK(a.owner_id == b.owner_id);
  CHECK(a.name == b.name);
  CHECK(a.scopes == b.scopes);
  CHECK(a.allowed_ips == b.allowed_ips);
  CHECK(a.rate_limit == b.rate_limit);
  CHECK(a.window_seconds == b.window_seconds);
  CHECK(a.quota == b.quota);
  CHECK(a.quota_period_seconds == b.quota_period_seconds);
  CHECK(a.is_active == b.is_active);
  CHECK(a.expires_at == b.expires_at);
  CHECK(a.revoked_at == b.revoked_at);
}

}  // namespace

TEST_CASE("key record codec: every field round-trips, any byte in strings") {
  const KeyRecord full = full_record();
  const auto decoded = decode_key_record(encode_key_record(full));
  REQUIRE(decoded);
  check_same(*decoded, full);

  KeyRecord minimal;
  minimal.id = "k";
  const auto back = decode_key_record(encode_key_record(minimal));
  REQUIRE(back);
  check_same(*back, minimal);
  CHECK_FALSE(back->rate_limit);
  CHECK_FALSE(back->expires_at);
  CHECK(encode_key_record(minimal) == "kr2;1:k0:0:0:0;0;~;~;~;~;1;~;~;");
}

TEST_CASE("key record codec: anything else is a miss, never a crash or a wrong record") {
  const std::string good = encode_key_record(full_record());
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    CHECK_FALSE(decode_key_record(std::string_view(good).substr(0, cut)));
  }
  CHECK_FALSE(decode_key_record(good + "x"));
  CHECK_FALSE(decode_key_record("!revoked"));  // the invalidation marker
  CHECK_FALSE(decode_key_record(R"({"v":1,"id":"k","ot":"","oi":"","n":"","s":[],"ip":[],"a":true})"));
  CHECK_FALSE(decode_key_record("kr2;999999999999:k"));         // a length past the end
  CHECK_FALSE(decode_key_record("kr2;1:k0:0:0:99999999;"));     // a count past the end
  CHECK_FALSE(decode_key_record("kr2;1:k0:0:0:0;0;~;~;~;~;2;~;~;"));  // is_active not 0/1
  CHECK_FALSE(decode_key_record("kr2;1:k0:0:0:0;0;9999999999;~;~;~;1;~;~;"));  // not an int
  CHECK_FALSE(decode_key_record("kr2;1:k0:0:0:0;1;5:nonip~;~;~;~;1;~;~;"));    // bad network
  CHECK_FALSE(decode_key_record("kr2;0:0:0:0:0;0;~;~;~;~;1;~;~;"));  // no id
}

TEST_CASE("redis_record_key is kg:key: and the hash in lowercase hex") {
  KeyHash hash{};
  hash[0] = 0xab;
  hash[31] = 0x01;
  const std::string key = redis_record_key(hash);
  CHECK(key.size() == 7 + 64);
  CHECK(key.starts_with("kg:key:ab00"));
  CHECK(key.ends_with("01"));
}

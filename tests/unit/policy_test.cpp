#include "authz/policy.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using keygate::authz::decide;
using keygate::authz::Decision;
using keygate::authz::DenyReason;
using keygate::authz::Route;
using keygate::authz::scope_grants;
using keygate::core::IpAddress;
using keygate::core::IpNetwork;
using keygate::store::KeyRecord;
using keygate::store::TimePoint;

namespace {
const TimePoint now = TimePoint(std::chrono::sys_days(std::chrono::year{2030} / 1 / 1));
const IpAddress client = *IpAddress::parse("10.1.2.3");

KeyRecord good_key() {
  KeyRecord key;
  key.id = "00000000-0000-0000-0000-000000000001";
  key.scopes = {"inventory:read"};
  key.allowed_ips = {*IpNetwork::parse("10.0.0.0/8")};
  key.expires_at = now + 1h;
  return key;
}
const Route read_route{.pattern = "/inventory/*", .scopes = {"inventory:read"}};
}  // namespace

TEST_CASE("a good key on a route it has the scope for is allowed") {
  CHECK(decide(good_key(), &read_route, client, now) == Decision::allow());
  CHECK(decide(good_key(), nullptr, client, now) == Decision::allow());
}

TEST_CASE("inactive and revoked keys are revoked_key, before every other check") {
  KeyRecord key = good_key();
  key.is_active = false;
  key.expires_at = now - 1h;
  key.allowed_ips = {*IpNetwork::parse("192.168.0.0/16")};
  CHECK(decide(key, &read_route, client, now) == Decision::deny(DenyReason::revoked_key));
  key = good_key();
  key.revoked_at = now + 1h;  // set at all means revoked
  key.expires_at = now - 1h;
  CHECK(decide(key, &read_route, client, now) == Decision::deny(DenyReason::revoked_key));
}

TEST_CASE("expiry: at or before now is expired, before the IP check") {
  KeyRecord key = good_key();
  key.expires_at = now;
  key.allowed_ips = {*IpNetwork::parse("192.168.0.0/16")};
  CHECK(decide(key, &read_route, client, now) == Decision::deny(DenyReason::expired_key));
  key = good_key();
  key.expires_at = now + 1ms;
  CHECK(decide(key, &read_route, client, now).allowed());
  key.expires_at.reset();  // never expires
  CHECK(decide(key, &read_route, client, now).allowed());
}

TEST_CASE("an allowlist admits only its networks, an empty one admits everyone") {
  KeyRecord key = good_key();
  key.scopes.clear();  // the IP check comes before the scope check
  key.allowed_ips = {*IpNetwork::parse("192.168.0.0/16"), *IpNetwork::parse("2001:db8::/32")};
  CHECK(decide(key, &read_route, client, now) == Decision::deny(DenyReason::ip_not_allowed));
  key.scopes = {"inventory:read"};
  CHECK(decide(key, &read_route, *IpAddress::parse("2001:db8::7"), now).allowed());
  CHECK(decide(key, &read_route, *IpAddress::parse("192.168.9.9"), now).allowed());
  key.allowed_ips.clear();
  CHECK(decide(key, &read_route, *IpAddress::parse("203.0.113.1"), now).allowed());
}

TEST_CASE("every scope of the route is required") {
  const Route both{.pattern = "/x", .scopes = {"inventory:read", "inventory:write"}};
  KeyRecord key = good_key();
  CHECK(decide(key, &both, client, now) == Decision::deny(DenyReason::insufficient_scope));
  key.scopes = {"inventory:write", "inventory:read"};
  CHECK(decide(key, &both, client, now).allowed());
  key.scopes = {"inventory:*"};
  CHECK(decide(key, &both, client, now).allowed());
  key.scopes.clear();
  CHECK(decide(key, &both, client, now) == Decision::deny(DenyReason::insufficient_scope));
  CHECK(decide(key, nullptr, client, now).allowed());
  const Route no_scopes{.pattern = "/y"};
  CHECK(decide(key, &no_scopes, client, now).allowed());
}

TEST_CASE("scope_grants: exact, '*', and namespace wildcards") {
  CHECK(scope_grants("inventory:read", "inventory:read"));
  CHECK(scope_grants("*", "inventory:read"));
  CHECK(scope_grants("*", "admin"));
  CHECK(scope_grants("inventory:*", "inventory:read"));
  CHECK(scope_grants("inventory:*", "inventory:items:read"));
  CHECK(scope_grants("inventory:*", "inventory:*"));
  CHECK_FALSE(scope_grants("inventory:*", "inventory"));
  CHECK_FALSE(scope_grants("inventory:*", "inventory:"));
  CHECK_FALSE(scope_grants("inventory:*", "inventoryx:read"));
  CHECK_FALSE(scope_grants("inventory:read", "inventory:write"));
  CHECK_FALSE(scope_grants("inventory:read", "inventory:*"));
  CHECK_FALSE(scope_grants("inventory", "inventory:read"));
  CHECK_FALSE(scope_grants("", "inventory:read"));
  CHECK_FALSE(scope_grants("Inventory:read", "inventory:read"));
  CHECK_FALSE(scope_grants(":*", "x"));
}

// The key-management API's pure part: who may do what with an admin token, and the bodies of
// POST /v1/keys and PATCH /v1/keys/{id} (every mistake a 400 naming its field); and the RFC 3339
// parser they use.
#include <doctest/doctest.h>

#include "api/key_listing.hpp"
#include "api/key_request.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

using namespace keygate;
using namespace std::chrono;
using api::AdminRole;

const core::SystemTime now = sys_days{2026y / 12 / 4} + hours(3);

store::KeyRecord key_with(std::vector<std::string> scopes, std::string owner_type = "team", std::string owner_id = "7") {
  store::KeyRecord k;
  k.owner_type = std::move(owner_type);
  k.owner_id = std::move(owner_id);
  k.scopes = std::move(scopes);
  return k;
}

std::string field_of(const std::optional<api::FieldError>& e) { return e ? e->field : "(no error)"; }

api::FieldError create_error(std::string_view body, const api::RequestRules& rules = {}) {
  auto decoded = api::decode_create_key(body, rules, now);
  REQUIRE_FALSE(decoded.ok());
  return *decoded.error;
}

api::FieldError patch_error(std::string_view body) {
  auto decoded = api::decode_key_patch(body, {}, now);
  REQUIRE_FALSE(decoded.ok());
  return *decoded.error;
}

}  // namespace

TEST_CASE("admin:* is an operator, admin:self manages its own owner's keys, anything else nothing") {
  const auto op = api::admin_authority(key_with({"orders:read", "admin:*"}));
  CHECK(op.role == AdminRole::operator_);
  CHECK(api::may_manage(op, "user", "1"));
  const auto self = api::admin_authority(key_with({"admin:self", "orders:read"}));
  CHECK(self.role == AdminRole::owner);
  CHECK(api::may_manage(self, "team", "7"));
  CHECK_FALSE(api::may_manage(self, "team", "70"));
  CHECK_FALSE(api::may_manage(self, "user", "7"));
  const auto plain = api::admin_authority(key_with({"orders:read", "admin"}));
  CHECK(plain.role == AdminRole::none);
  CHECK_FALSE(api::may_manage(plain, "team", "7"));
}

TEST_CASE("an owner token grants only scopes it holds, never admin:*, and an operator grants anything") {
  const auto self = api::admin_authority(key_with({"admin:self", "orders:read"}));
  CHECK_FALSE(api::check_grant(self, {"orders:read", "admin:self"}));
  CHECK(field_of(api::check_grant(self, {"orders:read", "orders:write"})) == "scopes[1]");
  CHECK(field_of(api::check_grant(self, {"admin:*"})) == "scopes[0]");
  const auto op = api::admin_authority(key_with({"admin:*"}));
  CHECK_FALSE(api::check_grant(op, {"anything", "admin:*"}));
  CHECK(field_of(api::check_grant(api::admin_authority(key_with({})), {"x"})) == "scopes[0]");
}

TEST_CASE("a create body with every field decodes into the repository's values") {
  auto decoded = api::decode_create_key(
      R"({"owner":"team:7","name":"ci","description":"for CI","scopes":["orders:read","orders:read","x"],
          "allowed_ips":["10.0.0.0/8","::1"],"rate_limit":"100/60s","quota":1000,"quota_period":"30d",
          "expires_in":"1d","metadata":{"ticket":42}})",
      {}, now);
  REQUIRE(decoded.ok());
  const auto& r = decoded.value;
  CHECK(r.owner_type == "team");
  CHECK(r.owner_id == "7");
  CHECK(r.name == "ci");
  CHECK(r.description == "for CI");
  CHECK(r.scopes == std::vector<std::string>{"orders:read", "x"});
  CHECK(r.allowed_ips.size() == 2);
  CHECK(r.rate_limit == core::RateLimitSpec{100, 60});
  CHECK(r.quota == 1000);
  CHECK(r.quota_period_seconds == 30 * 86400);
  CHECK(r.expires_at == now + days(1));
  CHECK(r.metadata_json == R"({"ticket":42})");

  auto minimal = api::decode_create_key(R"({"name":"x"})", {}, now);
  REQUIRE(minimal.ok());
  CHECK_FALSE(minimal.value.owner_type);
  CHECK(minimal.value.metadata_json == "{}");
  auto at = api::decode_create_key(R"({"name":"x","expires_at":"2027-01-01T00:00:00+01:00"})", {}, now);
  REQUIRE(at.ok());
  CHECK(at.value.expires_at == sys_days{2026y / 12 / 31} + hours(23));
}

TEST_CASE("every create mistake is a 400 naming its field") {
  CHECK(create_error("{").field == "");
  CHECK(create_error("[]").message == "expected a JSON object, got an array");
  CHECK(create_error(R"({"name":"x","colour":"red"})").field == "colour");
  CHECK(create_error(R"({"name":"x","colour":"red"})").message == "unknown field");
  CHECK(create_error(R"({})").field == "name");
  CHECK(create_error(R"({"name":7})").message == "expected a string, got a number");
  CHECK(create_error(R"({"name":""})").message == "must not be empty");
  CHECK(create_error(R"({"name":")" + std::string(201, 'n') + R"("})").message == "longer than 200 bytes");
  CHECK(create_error(R"({"name":"a\u0001b"})").message == "must not hold control characters");
  CHECK(create_error(R"({"name":"x","owner":"nobody"})").field == "owner");
  CHECK(create_error(R"({"name":"x","scopes":"a,b"})").field == "scopes");
  CHECK(create_error(R"({"name":"x","scopes":["a","b c"]})").field == "scopes[1]");
  CHECK(create_error(R"({"name":"x","allowed_ips":["10.0.0.0/33"]})").field == "allowed_ips[0]");
  CHECK(create_error(R"({"name":"x","allowed_ips":["10.0.0.1","bad"]})").field == "allowed_ips[1]");
  CHECK(create_error(R"({"name":"x","rate_limit":"fast"})").field == "rate_limit");
  CHECK(create_error(R"({"name":"x","quota":-1})").field == "quota");
  CHECK(create_error(R"({"name":"x","quota":1.5})").field == "quota");
  CHECK(create_error(R"({"name":"x","quota_period":"1d"})").message == "needs quota");
  CHECK(create_error(R"({"name":"x","expires_at":"2020-01-01T00:00:00Z"})").message == "is in the past");
  CHECK(create_error(R"({"name":"x","expires_at":"tomorrow"})").field == "expires_at");
  CHECK(create_error(R"({"name":"x","expires_at":"2027-01-01T00:00:00Z","expires_in":"1d"})").field == "expires_in");
  CHECK(create_error(R"({"name":"x","expires_in":"0s"})").field == "expires_in");
  CHECK(create_error(R"({"name":"x","metadata":[1]})").field == "metadata");
  CHECK(create_error(R"({"name":"x","metadata":{"a":")" + std::string(5000, 'a') + R"("}})").field == "metadata");

  api::RequestRules closed;
  closed.scope_vocabulary = {"orders:read"};
  CHECK(create_error(R"({"name":"x","scopes":["orders:read","orders:write"]})", closed).field == "scopes[1]");
  CHECK(api::decode_create_key(R"({"name":"x","scopes":["orders:read","admin:self"]})", closed, now).ok());
}

TEST_CASE("a patch changes what it names, null clears what may be cleared, and owner never changes") {
  auto decoded = api::decode_key_patch(R"({"name":"renamed","rate_limit":null,"expires_at":null,"scopes":[]})", {}, now);
  REQUIRE(decoded.ok());
  const auto& p = decoded.value;
  CHECK(p.name == "renamed");
  REQUIRE(p.rate_limit.has_value());
  CHECK_FALSE(p.rate_limit->has_value());
  REQUIRE(p.expires_at.has_value());
  CHECK_FALSE(p.expires_at->has_value());
  CHECK(p.scopes == std::vector<std::string>{});
  CHECK_FALSE(p.description.has_value());
  CHECK_FALSE(p.quota.has_value());

  CHECK(patch_error(R"({})").message == "nothing to change: give at least one field");
  CHECK(patch_error(R"({"owner":"team:8"})").field == "owner");
  CHECK(patch_error(R"({"name":null})").field == "name");
  CHECK(patch_error(R"({"scopes":null})").field == "scopes");
  CHECK(patch_error(R"({"expires_in":null})").field == "expires_in");
  CHECK(patch_error(R"({"id":"x"})").field == "id");
}

TEST_CASE("RFC 3339 times: offsets, fractions, and what is not a time") {
  CHECK(core::parse_rfc3339("2026-12-04T03:00:00Z") == now);
  CHECK(core::parse_rfc3339("2026-12-04t05:30:00+02:30") == now);
  CHECK(core::parse_rfc3339("2026-12-03T22:00:00-05:00") == now);
  CHECK(core::parse_rfc3339("2026-12-04T03:00:00.25Z") == now + milliseconds(250));
  CHECK(core::parse_rfc3339("2026-12-04T03:00:00.123456789Z") == now + microseconds(123456));
  for (const char* bad : {"", "2026-12-04", "2026-12-04T03:00:00", "2026-02-30T00:00:00Z", "2026-12-04T24:00:00Z",
                          "2026-12-04T03:00:60Z", "2026-12-04 03:00:00Z", "2026-12-04T03:00:00.Z",
                          "2026-12-04T03:00:00.1234567890Z", "2026-12-04T03:00:00+0200", "1969-12-31T23:59:59Z",
                          "2026-12-04T03:00:00Zjunk", "+026-12-04T03:00:00Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(core::parse_rfc3339(bad));
  }
}

#include "api/api_routes.hpp"
#include "app/config.hpp"

TEST_CASE("API routes: each endpoint, its methods, 405 with Allow, and what is not an endpoint") {
  using api::Endpoint;
  CHECK(api::match_route("GET", "/v1/keys").endpoint == Endpoint::keys);
  CHECK(api::match_route("POST", "/v1/keys").method_allowed);
  const auto wrong = api::match_route("PUT", "/v1/keys");
  CHECK(wrong.endpoint == Endpoint::keys);
  CHECK_FALSE(wrong.method_allowed);
  CHECK(wrong.allow == "GET, POST");
  const auto key = api::match_route("GET", "/v1/keys/0b6f3a52-8d1e-4c1b-9a57-3f0d2b7c9e11");
  CHECK(key.endpoint == Endpoint::key);
  CHECK(key.id == "0b6f3a52-8d1e-4c1b-9a57-3f0d2b7c9e11");
  CHECK(api::match_route("POST", "/v1/keys/abc/revoke").endpoint == Endpoint::key_revoke);
  CHECK(api::match_route("POST", "/v1/keys/abc/rotate").endpoint == Endpoint::key_rotate);
  CHECK_FALSE(api::match_route("GET", "/v1/keys/abc/revoke").method_allowed);
  CHECK(api::match_route("POST", "/v1/verify").endpoint == Endpoint::verify);
  CHECK(api::match_route("GET", "/v1/openapi.json").endpoint == Endpoint::openapi);
  for (const char* path : {"/v1/keys/", "/v1/keys//revoke", "/v1/keys/abc/delete", "/v1/keys/abc/revoke/x", "/v1",
                           "/v1/keysx", "/v2/keys"}) {
    CAPTURE(path);
    CHECK(api::match_route("GET", path).endpoint == Endpoint::not_found);
  }
  CHECK(api::match_route("GET", "/v1/keys/" + std::string(65, 'a')).endpoint == Endpoint::not_found);
}

TEST_CASE("verify and rotate bodies") {
  auto v = api::decode_verify(R"({"key":"kg_live_x","method":"POST","path":"/orders/1","client_ip":"10.1.2.3"})");
  REQUIRE(v.ok());
  CHECK(v.value.method == "POST");
  CHECK(v.value.client_ip.has_value());
  auto defaults = api::decode_verify(R"({"key":"k"})");
  REQUIRE(defaults.ok());
  CHECK(defaults.value.method == "GET");
  CHECK(defaults.value.path == "/");
  CHECK(api::decode_verify(R"({})").error->field == "key");
  CHECK(api::decode_verify(R"({"key":5})").error->message == "expected the key, a string of 1 to 512 bytes");
  CHECK(api::decode_verify(R"({"key":"k","method":"get"})").error->field == "method");
  CHECK(api::decode_verify(R"({"key":"k","path":"orders"})").error->field == "path");
  CHECK(api::decode_verify(R"({"key":"k","client_ip":"nowhere"})").error->field == "client_ip");
  CHECK(api::decode_rotate("").value == hours(24));
  CHECK(api::decode_rotate(R"({"grace":"0s"})").value == milliseconds(0));
  CHECK(api::decode_rotate(R"({"grace":"31d"})").error->field == "grace");
  CHECK(api::decode_rotate(R"({"later":"1h"})").error->field == "later");
}

TEST_CASE("config: api_listen is off unless set, and needs keygate's own table") {
  using keygate::app::parse_config;
  CHECK_FALSE(parse_config("", "config.yaml", {}).api_listen);
  const auto on = parse_config("api_listen: 127.0.0.1:9902\n", "config.yaml", {});
  REQUIRE(on.api_listen);
  CHECK(on.api_listen->port == 9902);
  CHECK_FALSE(parse_config("api_listen: off\n", "config.yaml", {}).api_listen);
  CHECK(parse_config("", "config.yaml", {{"KEYGATE_API_LISTEN", "127.0.0.1:7"}}).api_listen->port == 7);
  try {
    parse_config("api_listen: 127.0.0.1:9902\nstore: { schema: custom, preset: user_api_key }\n", "config.yaml", {});
    FAIL("accepted");
  } catch (const keygate::app::ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "config.yaml:1: api_listen: the key-management API serves keygate's own api_keys: it needs store.schema: native");
  }
}

TEST_CASE("key listing: the query decodes into the page to read, each mistake names its parameter") {
  api::Authority operator_;
  operator_.role = AdminRole::operator_;
  auto page = api::decode_list_query("owner=user:42&status=revoked&limit=7", operator_);
  REQUIRE(page.ok());
  REQUIRE(page.value.page.owner);
  CHECK(page.value.page.owner->type == "user");
  CHECK(page.value.page.owner->id == "42");
  CHECK(page.value.page.status == store::KeyStatusFilter::revoked);
  CHECK(page.value.page.limit == 7);
  CHECK_FALSE(page.value.page.after);
  CHECK_FALSE(page.value.nothing_visible);
  CHECK(api::decode_list_query("", operator_).value.page.limit == 100);
  CHECK_FALSE(api::decode_list_query("", operator_).value.page.owner);

  // An owner token lists its own owner's keys only; asking for another's reads nothing.
  api::Authority owner = api::admin_authority(key_with({"admin:self"}));
  auto own = api::decode_list_query("", owner);
  REQUIRE(own.ok());
  CHECK(own.value.page.owner->type == "team");
  CHECK(own.value.page.owner->id == "7");
  CHECK(api::decode_list_query("owner=team:8", owner).value.nothing_visible);
  CHECK_FALSE(api::decode_list_query("owner=team:7", owner).value.nothing_visible);

  auto error_of = [&](std::string_view query) {
    auto decoded = api::decode_list_query(query, operator_);
    return decoded.ok() ? std::string("(no error)") : decoded.error->field;
  };
  CHECK(error_of("colour=red") == "colour");
  CHECK(error_of("owner=nobody") == "owner");
  CHECK(error_of("owner=:1") == "owner");
  CHECK(error_of("owner=user:") == "owner");
  CHECK(error_of("status=gone") == "status");
  CHECK(error_of("limit=0") == "limit");
  CHECK(error_of("limit=501") == "limit");
  CHECK(error_of("limit=ten") == "limit");
  CHECK(error_of("cursor=") == "cursor");
  CHECK(error_of("cursor=nope") == "cursor");
}

TEST_CASE("key listing: a cursor is the last key's creation time and id, and nothing else decodes") {
  store::KeyDetails last;
  last.record.id = "0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b";
  last.created_at = store::TimePoint(microseconds(1764817200123456));
  const std::string cursor = api::encode_key_cursor(last);
  CHECK(cursor == "1764817200123456.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b");
  auto decoded = api::decode_key_cursor(cursor);
  REQUIRE(decoded);
  CHECK(decoded->created_at_micros == 1764817200123456);
  CHECK(decoded->id == last.record.id);
  for (std::string_view bad : {"", ".", "12", "12.", ".0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b",
                               "-1.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b", "+1.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b",
                               "1x.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b", "12345678901234567890.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b",
                               "1.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8", "1.0b6f2c1e-8d1a-4f7e-9a40-2c3f5d6e7a8b.2"}) {
    CHECK_MESSAGE(!api::decode_key_cursor(bad), bad);
  }
}

TEST_CASE("config: api.scopes and api.leaks") {
  using keygate::app::parse_config;
  const auto defaults = parse_config("", "config.yaml", {});
  CHECK(defaults.api.scopes.empty());
  CHECK(defaults.api.leaks.public_keys_file.empty());
  CHECK(defaults.api.leaks.action == keygate::app::Config::Api::Leaks::Action::revoke);
  const auto set = parse_config("api:\n  scopes: [orders:read, \"orders:write\"]\n  leaks:\n    action: flag\n",
                                "config.yaml", {});
  CHECK(set.api.scopes == std::vector<std::string>{"orders:read", "orders:write"});
  CHECK(set.api.leaks.action == keygate::app::Config::Api::Leaks::Action::flag);
  auto error_of = [](const std::string& yaml) {
    try {
      parse_config(yaml, "config.yaml", {});
      return std::string("(accepted)");
    } catch (const keygate::app::ConfigError& e) {
      return std::string(e.what());
    }
  };
  CHECK(error_of("api:\n  scopes: [\"a,b\"]\n") ==
        "config.yaml:2: api.scopes[0]: a scope is visible ASCII without quotes, commas or backslashes, got \"a,b\"");
  CHECK(error_of("api:\n  leaks:\n    action: delete\n") ==
        "config.yaml:3: api.leaks.action: expected revoke or flag, got \"delete\"");
  CHECK(error_of("api:\n  leaks:\n    public_keys_file: /nonexistent/keys.json\n").find(
            "config.yaml:3: api.leaks.public_keys_file: ") == 0);
  CHECK(error_of("api:\n  colour: red\n").find("config.yaml:2: api.colour: ") == 0);
  // A file that is there but is not GitHub's document: refused with the parser's reason.
  const auto path = std::filesystem::temp_directory_path() / ("kg-leak-keys-" + std::to_string(::getpid()) + ".json");
  { std::ofstream(path) << R"({"public_keys": []})"; }
  const std::string refused = error_of("api:\n  leaks:\n    public_keys_file: " + path.string() + "\n");
  std::filesystem::remove(path);
  CHECK_MESSAGE(refused.find("config.yaml:3: api.leaks.public_keys_file: \"" + path.string() + "\": public_keys") == 0, refused);
}

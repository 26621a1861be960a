// The authorizer's every decision row and every store outcome, with in-memory stand-ins for
// PostgreSQL (a KeySource) and Redis (a RateCounter); the L1 cache, the tiered lookup, the
// policy and the rate limiter are the real ones. No I/O.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <map>
#include <memory>
#include <string>

#include "authz/key_authorizer.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "authz/rate_limiter.hpp"
#include "store/key_lookup.hpp"
#include "store/l1_cache.hpp"
#include "store/redis_rate_counter.hpp"

namespace asio = boost::asio;
using namespace keygate;
using namespace keygate::authz;
using namespace std::chrono_literals;

namespace {

class MemorySource final : public store::KeySource {
 public:
  asio::awaitable<store::TierAnswer> find(const store::KeyHash& hash, std::string_view) override {
    ++queries;
    if (down) co_return store::TierAnswer{store::TierAnswer::Status::unavailable, nullptr};
    const auto it = records.find(hash);
    if (it == records.end()) co_return store::TierAnswer{store::TierAnswer::Status::not_found, nullptr};
    co_return store::TierAnswer{store::TierAnswer::Status::found, std::make_shared<store::KeyRecord>(it->second)};
  }
  std::map<store::KeyHash, store::KeyRecord> records;
  bool down = false;
  int queries = 0;
};

// Counts one request a call against a fixed limit; or answers unavailable (Redis down).
class CountingRedis final : public store::RateCounter {
 public:
  bool available() const override { return true; }
  asio::awaitable<store::WindowHitResult> hit(const store::WindowHit& request) override {
    store::WindowHitResult out;
    if (down) co_return out;  // unavailable
    out.status = store::WindowHitResult::Status::ok;
    const bool room = used < request.limit;
    if (room) ++used;
    out.verdict = room ? store::WindowHitResult::Verdict::allowed
                       : store::WindowHitResult::Verdict::rate_limited;
    out.granted = room ? 1 : 0;
    out.current = used;
    if (!room) {
      out.counts.assign(SlidingWindow::buckets + 1, 0);
      out.counts.back() = used;
    }
    co_return out;
  }
  bool down = false;
  std::int64_t used = 0;
};

struct Routes {
  static RouteTable inventory() {
    return RouteTable({
        Route{.pattern = "/public/*", .is_public = true},
        Route{.pattern = "/inventory/*", .methods = {"GET"}, .scopes = {"inventory:read"}},
        Route{.pattern = "/inventory/*", .methods = {"POST", "PUT", "DELETE"},
              .scopes = {"inventory:write"}},
    });
  }
};

// One worker's authorizer over the stand-ins, with a key the source knows.
struct World {
  explicit World(AuthorizerSettings s = {}, RateLimiterOptions limits = {}) {
    if (s.routes.routes().empty()) s.routes = Routes::inventory();
    settings = std::make_shared<AuthorizerSettings>(std::move(s));
    limiter = std::make_unique<RateLimiter>(limits, &redis);
    authorizer = std::make_unique<KeyAuthorizer>(settings, lookup, *limiter);
    key = generate_key("kg_test");
    store::KeyRecord record;
    record.id = "key-1";
    record.owner_type = "team";
    record.owner_id = "a";
    record.key_hash = hash_key(key, settings->pepper);
    record.scopes = {"inventory:read"};
    record.rate_limit = 3;
    record.window_seconds = 60;
    source.records[record.key_hash] = record;
  }

  store::KeyRecord& record() { return source.records.begin()->second; }

  AuthResult run(std::string_view method, std::string_view path,
                 std::initializer_list<std::string_view> keys) {
    AuthRequest request;
    request.method = method;
    request.path = path;
    request.client_ip = *core::IpAddress::parse("10.0.0.1");
    for (const std::string_view k : keys) request.credential.add(k);
    auto done = asio::co_spawn(io, authorizer->authorize(request), asio::use_future);
    io.restart();
    io.run();
    return done.get();
  }
  AuthResult run_with_key(std::string_view method = "GET",
                          std::string_view path = "/inventory/1") {
    return run(method, path, {key});
  }

  asio::io_context io;
  store::L1Cache l1{{1000, 30s, 5s}};
  MemorySource source;
  CountingRedis redis;
  store::KeyLookup lookup{io.get_executor(), l1, nullptr, source};
  std::shared_ptr<const AuthorizerSettings> settings;
  std::unique_ptr<RateLimiter> limiter;
  std::unique_ptr<KeyAuthorizer> authorizer;
  std::string key;
};

void check_refused(const AuthResult& r, Outcome outcome, DenyReason reason, int status) {
  CHECK(r.decision.outcome == outcome);
  CHECK(r.decision.reason == reason);
  CHECK(http_status(r.decision) == status);
}

}  // namespace

TEST_CASE("a Decision nobody set is an error answered 500, never an allow") {
  const Decision unset;
  CHECK(unset.outcome == Outcome::error);
  CHECK_FALSE(unset.allowed());
  CHECK(http_status(unset) == 500);
  CHECK(error_code(unset.reason) == "internal_error");
  CHECK(http_status(Decision::deny(DenyReason::none)) == 500);  // a refusal without a reason
  CHECK(decision_label(Decision::deny(DenyReason::none)) == "internal_error");
  CHECK(http_status(AuthResult{}.decision) == 500);
}

TEST_CASE("authorizer: a valid key with the route's scope is allowed, counted, with headers") {
  World w;
  const AuthResult r = w.run_with_key();
  CHECK(r.decision == Decision::allow());
  REQUIRE(r.key);
  CHECK(r.key->id == "key-1");
  CHECK(r.rate.applies);
  CHECK(r.rate.limit == 3);
  CHECK(r.rate.remaining == 2);
  CHECK(w.redis.used == 1);
}

TEST_CASE("authorizer: public routes need no key and count nothing") {
  World w;
  const AuthResult r = w.run("GET", "/public/x", {});
  CHECK(r.decision == Decision::allow());
  CHECK(r.public_route);
  CHECK_FALSE(r.key);
  CHECK(w.source.queries == 0);
}

TEST_CASE("authorizer: an unlisted method is 405 with Allow, before any key is looked at") {
  World w;
  for (const char* method : {"PATCH", "get", "HEAD"}) {
    CAPTURE(method);
    const AuthResult r = w.run(method, "/inventory/x", {w.key});
    check_refused(r, Outcome::deny, DenyReason::method_not_allowed, 405);
    CHECK(r.allow == "GET, POST, PUT, DELETE");
    CHECK_FALSE(r.rate.applies);
  }
  CHECK(w.source.queries == 0);
  CHECK(w.redis.used == 0);
}

TEST_CASE("authorizer: a path no route matches follows routes_default") {
  SUBCASE("deny (the default): 403 no_route, even with a valid key") {
    World w;
    CHECK(AuthorizerSettings{}.routes_default == RoutesDefault::deny);
    check_refused(w.run_with_key("GET", "/elsewhere"), Outcome::deny, DenyReason::no_route, 403);
    check_refused(w.run("GET", "/elsewhere", {}), Outcome::deny, DenyReason::no_route, 403);
    CHECK(w.source.queries == 0);
  }
  SUBCASE("key: any valid key, with no scope needed") {
    World w(AuthorizerSettings{.routes_default = RoutesDefault::key});
    w.record().scopes.clear();
    CHECK(w.run_with_key("DELETE", "/elsewhere").decision == Decision::allow());
    check_refused(w.run("GET", "/elsewhere", {}), Outcome::deny, DenyReason::missing_key, 401);
  }
}

TEST_CASE("authorizer: credential rows (no I/O for any of them)") {
  World w;
  check_refused(w.run("GET", "/inventory/1", {}), Outcome::deny, DenyReason::missing_key, 401);
  check_refused(w.run("GET", "/inventory/1", {"not-a-key"}), Outcome::deny,
                DenyReason::invalid_key, 401);
  std::string typo = w.key;
  typo[10] = typo[10] == 'a' ? 'b' : 'a';
  check_refused(w.run("GET", "/inventory/1", {typo}), Outcome::deny, DenyReason::invalid_key, 401);
  const std::string other = generate_key("kg_test");
  check_refused(w.run("GET", "/inventory/1", {w.key, other}), Outcome::deny,
                DenyReason::conflicting_keys, 400);
  CHECK(w.source.queries == 0);
  // The same key in two places is one key.
  CHECK(w.run("GET", "/inventory/1", {w.key, w.key}).decision == Decision::allow());
}

TEST_CASE("authorizer: an unknown key is 401 invalid_key, and is cached as absent") {
  World w;
  const std::string unknown = generate_key("kg_test");
  check_refused(w.run("GET", "/inventory/1", {unknown}), Outcome::deny, DenyReason::invalid_key, 401);
  check_refused(w.run("GET", "/inventory/1", {unknown}), Outcome::deny, DenyReason::invalid_key, 401);
  CHECK(w.source.queries == 1);
}

TEST_CASE("authorizer: policy rows carry the key but no RateLimit-* (no limit consulted)") {
  struct Row {
    const char* name;
    void (*change)(store::KeyRecord&);
    DenyReason reason;
    int status;
  };
  const Row rows[] = {
      {"revoked", [](store::KeyRecord& k) { k.revoked_at = store::Clock::now(); },
       DenyReason::revoked_key, 401},
      {"inactive", [](store::KeyRecord& k) { k.is_active = false; }, DenyReason::revoked_key, 401},
      {"expired", [](store::KeyRecord& k) { k.expires_at = store::Clock::now() - 1s; },
       DenyReason::expired_key, 401},
      {"address", [](store::KeyRecord& k) { k.allowed_ips = {*core::IpNetwork::parse("192.168.0.0/16")}; },
       DenyReason::ip_not_allowed, 403},
      {"scope", [](store::KeyRecord& k) { k.scopes = {"billing:read"}; },
       DenyReason::insufficient_scope, 403},
  };
  for (const Row& row : rows) {
    CAPTURE(row.name);
    World w;
    row.change(w.record());
    const AuthResult r = w.run_with_key();
    check_refused(r, Outcome::deny, row.reason, row.status);
    CHECK(r.key);
    CHECK_FALSE(r.rate.applies);
    CHECK(w.redis.used == 0);
  }
}

TEST_CASE("authorizer: over the limit is 429 rate_limited with RateLimit-* and Retry-After") {
  World w;
  for (int i = 0; i < 3; ++i) REQUIRE(w.run_with_key().decision == Decision::allow());
  const AuthResult r = w.run_with_key();
  check_refused(r, Outcome::deny, DenyReason::rate_limited, 429);
  CHECK(r.rate.applies);
  CHECK(r.rate.remaining == 0);
  CHECK(r.rate.retry_after_seconds >= 1);
}

TEST_CASE("authorizer: a lookup no tier can answer is 503, whatever on_store_error says") {
  for (const OnStoreError mode : {OnStoreError::closed, OnStoreError::open}) {
    World w(AuthorizerSettings{.on_store_error = mode});
    w.source.down = true;
    const AuthResult r = w.run_with_key();
    check_refused(r, Outcome::error, DenyReason::store_unavailable, 503);
    CHECK_FALSE(r.key);
    CHECK(r.rate.retry_after_seconds == 1);
  }
}

TEST_CASE("authorizer: Redis down with on_redis_error: error is a store error for a verified key") {
  RateLimiterOptions limits;
  limits.on_redis_error = OnRedisError::error;
  SUBCASE("on_store_error: closed (the default) answers 503") {
    World w({}, limits);
    w.redis.down = true;
    const AuthResult r = w.run_with_key();
    check_refused(r, Outcome::error, DenyReason::store_unavailable, 503);
    CHECK(r.key);
    CHECK_FALSE(r.rate.applies);
  }
  SUBCASE("on_store_error: open lets it through, labelled as such") {
    World w(AuthorizerSettings{.on_store_error = OnStoreError::open}, limits);
    w.redis.down = true;
    const AuthResult r = w.run_with_key();
    CHECK(r.decision == Decision::allow_on_store_error());
    CHECK(http_status(r.decision) == 200);
    CHECK(decision_label(r.decision) == "allowed_on_store_error");
    CHECK_FALSE(r.rate.applies);
    // ...but never past the policy: a revoked key is refused before the limit is asked.
    World revoked(AuthorizerSettings{.on_store_error = OnStoreError::open}, limits);
    revoked.redis.down = true;
    revoked.record().revoked_at = store::Clock::now();
    check_refused(revoked.run_with_key(), Outcome::deny, DenyReason::revoked_key, 401);
  }
}

TEST_CASE("authorizer: the pepper decides the hash the stores are asked for") {
  World peppered(AuthorizerSettings{.pepper = "pepper-1"});
  CHECK(peppered.run_with_key().decision == Decision::allow());
  // The same key hashed without the pepper is another hash: unknown.
  World plain;
  plain.source.records.clear();
  store::KeyRecord record = peppered.record();
  plain.source.records[record.key_hash] = record;
  check_refused(plain.run("GET", "/inventory/1", {peppered.key}), Outcome::deny,
                DenyReason::invalid_key, 401);
}

TEST_CASE("decision labels: one per counter slot, every reason named") {
  CHECK(decision_label(std::size_t{0}) == "allowed");
  CHECK(decision_label(std::size_t{1}) == "allowed_on_store_error");
  for (int i = 1; i <= static_cast<int>(last_deny_reason); ++i) {
    const auto reason = static_cast<DenyReason>(i);
    CAPTURE(i);
    CHECK(decision_index(Decision::deny(reason)) < decision_label_count);
    CHECK(decision_label(Decision::deny(reason)) == error_code(reason));
    CHECK_FALSE(error_message(reason).empty());
  }
}

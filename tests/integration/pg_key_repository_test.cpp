// KeyRepository against a real PostgreSQL with the real schema, each case on a scratch database.
#include <doctest/doctest.h>

#include "core/hex.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#include "store/key_repository.hpp"
#include "store/metrics.hpp"
#include "store/migrator.hpp"
#include "store/pg_pool.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::core::IpNetwork;
using keygate::store::KeyDetails;
using keygate::store::KeyHash;
using keygate::store::KeyOwner;
using keygate::store::KeyRepository;
using keygate::store::NewKey;
using keygate::store::PgConnection;
using keygate::store::PgOptions;
using keygate::store::PgPool;
using keygate::store::RepoStatus;
using keygate::store::TimePoint;
using keygate::test::run_coro;
using keygate::test::ScratchDatabase;

namespace {

// A scratch database with the schema migrated.
struct MigratedDatabase : ScratchDatabase {
  MigratedDatabase() {
    migrate_up();
  }
  PgOptions options() const { return PgOptions{dsn(), 2, 5s, 5s}; }
};

KeyOwner owner(const char* type, const char* id) {
  KeyOwner o;
  o.type = type;
  o.id = id;
  return o;
}

KeyHash hash_of(std::uint8_t seed) {
  KeyHash hash{};
  for (std::size_t i = 0; i < hash.size(); ++i) hash[i] = static_cast<std::uint8_t>(seed + i * 7);
  return hash;
}

// g++ 12 mis-builds braced temporaries inside coroutine bodies (the test bodies are
// coroutines), so owners are passed as two strings.
NewKey sample_key(std::uint8_t seed, const char* owner_type = "user", const char* owner_id = "42") {
  NewKey key;
  key.owner.type = owner_type;
  key.owner.id = owner_id;
  key.name = "ci key " + std::to_string(seed);
  key.description = "for the \"nightly\" build";
  key.key_prefix = "kg_test_abcd";
  key.key_hash = hash_of(seed);
  key.scopes = {"inventory:read", "with space", "quo\"te", "back\\slash", "NULL", "a,b"};
  key.allowed_ips = {*IpNetwork::parse("10.0.0.0/8"), *IpNetwork::parse("2001:db8::/32"),
                     *IpNetwork::parse("192.168.1.7/32")};
  key.rate_limit = 100;
  key.window_seconds = 60;
  key.quota = 5000;
  key.quota_period_seconds = 86400;
  key.expires_in = std::chrono::hours(24 * 30);
  key.metadata_json = R"({"team": "platform"})";
  key.created_by = "test";
  return key;
}

bool near(TimePoint a, TimePoint b, std::chrono::seconds tolerance = 60s) {
  return a - b < tolerance && b - a < tolerance;
}

}  // namespace

TEST_CASE("a created key is found by its hash with every KeyRecord field, in one counted query") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    const NewKey input = sample_key(1);
    auto created = co_await repository.create(input);
    REQUIRE_MESSAGE(created.ok(), created.error);
    const KeyDetails& details = created.value;
    CHECK(keygate::core::is_uuid(details.record.id));
    CHECK(details.key_prefix == "kg_test_abcd");
    CHECK(details.description == input.description);
    CHECK(details.metadata_json == R"({"team": "platform"})");
    CHECK(near(details.created_at, keygate::store::Clock::now()));
    CHECK(details.created_by == "test");

    auto& m = keygate::store::metrics();
    const auto queries = m.postgres_key_queries.load();
    auto found = co_await repository.find_by_hash(input.key_hash);
    REQUIRE_MESSAGE(found.ok(), found.error);
    CHECK(m.postgres_key_queries.load() == queries + 1);
    const auto& record = found.value;
    CHECK(record.id == details.record.id);
    CHECK(record.owner_type == "user");
    CHECK(record.owner_id == "42");
    CHECK(record.name == input.name);
    CHECK(record.key_hash == input.key_hash);
    CHECK(record.scopes == input.scopes);
    CHECK(record.allowed_ips == input.allowed_ips);
    CHECK(record.rate_limit == 100);
    CHECK(record.window_seconds == 60);
    CHECK(record.quota == 5000);
    CHECK(record.quota_period_seconds == 86400);
    CHECK(record.is_active);
    REQUIRE(record.expires_at.has_value());
    CHECK(near(*record.expires_at, details.created_at + std::chrono::hours(24 * 30), 1s));
    CHECK_FALSE(record.revoked_at.has_value());

    auto missing = co_await repository.find_by_hash(hash_of(99));
    CHECK(missing.status == RepoStatus::not_found);
    CHECK(m.postgres_key_queries.load() == queries + 2);
  }());
}

TEST_CASE("a key with no limits, scopes or addresses reads back as empty and unset") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    NewKey bare;
    bare.owner = owner("service", "billing");
    bare.name = "bare";
    bare.key_prefix = "kg_live_0000";
    bare.key_hash = hash_of(2);
    {
      auto r1 = co_await repository.create(bare);
      REQUIRE(r1.ok());
    }
    auto found = co_await repository.find_by_hash(bare.key_hash);
    REQUIRE(found.ok());
    CHECK(found.value.scopes.empty());
    CHECK(found.value.allowed_ips.empty());
    CHECK_FALSE(found.value.rate_limit.has_value());
    CHECK_FALSE(found.value.quota.has_value());
    CHECK_FALSE(found.value.expires_at.has_value());
  }());
}

TEST_CASE("the schema rejects what breaks its rules") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    {
      auto r2 = co_await repository.create(sample_key(3));
      REQUIRE(r2.ok());
    }
    auto duplicate = co_await repository.create(sample_key(3));
    CHECK(duplicate.status == RepoStatus::rejected);

    NewKey half_limit = sample_key(4);
    half_limit.window_seconds.reset();
    auto r = co_await repository.create(half_limit);
    CHECK(r.status == RepoStatus::rejected);
    CHECK(r.error.find("api_keys_rate_limit_with_window") != std::string::npos);

    NewKey negative_quota = sample_key(5);
    negative_quota.quota = -1;
    {
      auto r3 = co_await repository.create(negative_quota);
      CHECK(r3.status == RepoStatus::rejected);
    }

    NewKey empty_owner = sample_key(6, "", "1");
    {
      auto r4 = co_await repository.create(empty_owner);
      CHECK(r4.status == RepoStatus::rejected);
    }
  }());
}

TEST_CASE("list filters by owner, oldest first, show finds one key, unknown ids are not found") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    auto a = co_await repository.create(sample_key(10, "user", "1"));
    auto b = co_await repository.create(sample_key(11, "user", "2"));
    auto c = co_await repository.create(sample_key(12, "user", "1"));
    REQUIRE((a.ok() && b.ok() && c.ok()));

    auto everyone = co_await repository.list(std::nullopt);
    REQUIRE(everyone.ok());
    CHECK(everyone.value.size() == 3);
    auto user1 = co_await repository.list(owner("user", "1"));
    REQUIRE(user1.ok());
    REQUIRE(user1.value.size() == 2);
    CHECK(user1.value[0].record.id == a.value.record.id);
    CHECK(user1.value[1].record.id == c.value.record.id);
    auto nobody = co_await repository.list(owner("team", "1"));
    CHECK(nobody.ok());
    CHECK(nobody.value.empty());

    auto shown = co_await repository.show(b.value.record.id);
    REQUIRE(shown.ok());
    CHECK(shown.value.record.owner_id == "2");
    CHECK(shown.value.record.scopes == sample_key(11).scopes);

    {
      auto r5 = co_await repository.show("00000000-0000-0000-0000-000000000000");
      CHECK(r5.status == RepoStatus::not_found);
    }
    {
      auto r6 = co_await repository.show("not-a-uuid");
      CHECK(r6.status == RepoStatus::not_found);
    }
    {
      auto r7 = co_await repository.show("'; DROP TABLE api_keys; --");
      CHECK(r7.status == RepoStatus::not_found);
    }
  }());
}

TEST_CASE("revoking twice is not an error, unknown ids are not found, a notice goes out once") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    PgPool pool(executor, db.options());
    KeyRepository repository(pool);
    PgConnection listener(executor);
    {
      auto r8 = co_await listener.connect(db.dsn(), 5s);
      REQUIRE(r8.ok());
    }
    {
      auto r9 = co_await listener.execute("LISTEN keygate_key_changed", 2s);
      REQUIRE(r9.ok());
    }

    const NewKey input = sample_key(20);
    auto created = co_await repository.create(input);
    REQUIRE(created.ok());
    const std::string id = created.value.record.id;

    auto first = co_await repository.revoke(id);
    REQUIRE_MESSAGE(first.ok(), first.error);
    CHECK_FALSE(first.value.already_revoked);
    auto notice = co_await listener.wait_notification(5s);
    REQUIRE(notice.notification.has_value());
    CHECK(notice.notification->channel == "keygate_key_changed");
    CHECK(notice.notification->payload ==
          keygate::store::format_pg_bytea(input.key_hash.data(), input.key_hash.size()).substr(2));

    auto second = co_await repository.revoke(id);
    REQUIRE(second.ok());
    CHECK(second.value.already_revoked);
    CHECK(second.value.revoked_at == first.value.revoked_at);
    auto quiet = co_await listener.wait_notification(200ms);
    CHECK_FALSE(quiet.notification.has_value());

    auto found = co_await repository.find_by_hash(input.key_hash);
    REQUIRE(found.ok());
    CHECK_FALSE(found.value.is_active);
    CHECK(found.value.revoked_at.has_value());

    {
      auto r10 = co_await repository.revoke("00000000-0000-0000-0000-000000000000");
      CHECK(r10.status == RepoStatus::not_found);
    }
    {
      auto r11 = co_await repository.revoke("xyz");
      CHECK(r11.status == RepoStatus::not_found);
    }
  }());
}

TEST_CASE("only changes that matter to the request path send a notice") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    PgPool pool(executor, db.options());
    KeyRepository repository(pool);
    auto created = co_await repository.create(sample_key(25));
    REQUIRE(created.ok());
    PgConnection listener(executor);
    {
      auto r12 = co_await listener.connect(db.dsn(), 5s);
      REQUIRE(r12.ok());
    }
    {
      auto r13 = co_await listener.execute("LISTEN keygate_key_changed", 2s);
      REQUIRE(r13.ok());
    }
    db.sql("UPDATE api_keys SET last_used_at = now()");
    {
      auto r14 = co_await listener.wait_notification(200ms);
      CHECK_FALSE(r14.notification.has_value());
    }
    db.sql("UPDATE api_keys SET scopes = '{admin}'");
    {
      auto r15 = co_await listener.wait_notification(5s);
      CHECK(r15.notification.has_value());
    }
    db.sql("DELETE FROM api_keys");
    {
      auto r16 = co_await listener.wait_notification(5s);
      CHECK(r16.notification.has_value());
    }
  }());
}

TEST_CASE("rotate makes a new key with the same settings and gives the old one a grace period") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    const NewKey input = sample_key(30);
    auto created = co_await repository.create(input);
    REQUIRE(created.ok());
    const std::string old_id = created.value.record.id;

    auto rotated = co_await repository.rotate(old_id, "kg_test_new1", hash_of(31), std::chrono::hours(1));
    REQUIRE_MESSAGE(rotated.ok(), rotated.error);
    const auto& fresh = rotated.value.new_key;
    CHECK(fresh.record.id != old_id);
    CHECK(fresh.key_prefix == "kg_test_new1");
    CHECK(fresh.record.owner_type == "user");
    CHECK(fresh.record.owner_id == "42");
    CHECK(fresh.record.name == input.name);
    CHECK(fresh.record.scopes == input.scopes);
    CHECK(fresh.record.allowed_ips == input.allowed_ips);
    CHECK(fresh.record.rate_limit == 100);
    CHECK(fresh.record.quota == 5000);
    CHECK(fresh.metadata_json == created.value.metadata_json);
    REQUIRE(fresh.record.expires_at.has_value());
    CHECK(near(*fresh.record.expires_at, fresh.created_at + std::chrono::hours(24 * 30), 1s));
    REQUIRE(rotated.value.previous_expires_at.has_value());
    CHECK(near(*rotated.value.previous_expires_at, keygate::store::Clock::now() + 1h));

    auto old = co_await repository.find_by_hash(input.key_hash);
    REQUIRE(old.ok());
    CHECK(old.value.expires_at == rotated.value.previous_expires_at);
    {
      auto r17 = co_await repository.find_by_hash(hash_of(31));
      CHECK(r17.ok());
    }

    // A shorter existing expiry is kept: least(existing, now + grace).
    auto again = co_await repository.rotate(old_id, "kg_test_new2", hash_of(32), std::chrono::hours(48));
    REQUIRE(again.ok());
    CHECK(again.value.previous_expires_at == rotated.value.previous_expires_at);

    {
      auto r18 = co_await repository.rotate("00000000-0000-0000-0000-000000000000", "p", hash_of(33), 1h);
      CHECK(r18.status ==
          RepoStatus::not_found);
    }
    {
      auto r19 = co_await repository.revoke(old_id);
      REQUIRE(r19.ok());
    }
    auto revoked = co_await repository.rotate(old_id, "p", hash_of(34), 1h);
    CHECK(revoked.status == RepoStatus::rejected);
    CHECK(pool.open_connections() == 1);  // early exits roll back instead of dropping it
  }());
}

TEST_CASE("with PostgreSQL unreachable every repository call is unavailable, quickly") {
  unsigned short port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }
  PgOptions options{"postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/keygate", 2, 2s, 2s};
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, options);
    KeyRepository repository(pool);
    const auto queries = keygate::store::metrics().postgres_key_queries.load();
    auto found = co_await repository.find_by_hash(hash_of(1));
    CHECK(found.status == RepoStatus::unavailable);
    CHECK(found.error == "cannot reach PostgreSQL at 127.0.0.1:" + std::to_string(port) + ": connection refused");
    CHECK(keygate::store::metrics().postgres_key_queries.load() == queries);  // nothing was sent
    {
      auto r20 = co_await repository.list(std::nullopt);
      CHECK(r20.status == RepoStatus::unavailable);
    }
    const NewKey key = sample_key(1);
    auto created = co_await repository.create(key);
    CHECK(created.status == RepoStatus::unavailable);
  }(), 10s);
}

TEST_CASE("PgKeySource maps repository answers for the tiered lookup") {
  MigratedDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    keygate::store::PgKeySource source(repository);
    {
      auto r21 = co_await repository.create(sample_key(40));
      REQUIRE(r21.ok());
    }
    auto found = co_await source.find(hash_of(40), {});
    CHECK(found.status == keygate::store::TierAnswer::Status::found);
    REQUIRE(found.record != nullptr);
    CHECK(found.record->owner_id == "42");
    auto missing = co_await source.find(hash_of(41), {});
    CHECK(missing.status == keygate::store::TierAnswer::Status::not_found);
  }());
}

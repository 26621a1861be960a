// Migrator against a real PostgreSQL, each case on a scratch database.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#include "store/migrator.hpp"
#include "store/pg_connection.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::embedded_migrations;
using keygate::store::Migration;
using keygate::store::MigrationRun;
using keygate::store::Migrator;
using keygate::store::PgConnection;
using keygate::test::run_coro;
using keygate::test::ScratchDatabase;

namespace {

// Runs one migrator operation on a fresh connection to `dsn`.
template <typename Operation>
MigrationRun migrate(const std::string& dsn, std::vector<Migration> migrations, Operation operation) {
  return run_coro([&]() -> asio::awaitable<MigrationRun> {
    PgConnection connection(co_await asio::this_coro::executor);
    auto connected = co_await connection.connect(dsn, 5s);
    if (!connected.ok()) throw std::runtime_error(connected.error());
    Migrator migrator(connection, std::move(migrations));
    co_return co_await operation(migrator);
  }());
}

MigrationRun up(const std::string& dsn, std::vector<Migration> m = embedded_migrations()) {
  return migrate(dsn, std::move(m), [](Migrator& x) { return x.up(); });
}
MigrationRun down(const std::string& dsn, bool all, std::vector<Migration> m = embedded_migrations()) {
  return migrate(dsn, std::move(m), [all](Migrator& x) { return x.down(all); });
}
MigrationRun status(const std::string& dsn, std::vector<Migration> m = embedded_migrations()) {
  return migrate(dsn, std::move(m), [](Migrator& x) { return x.status(); });
}

// Tables in the public schema, without partitions (whose names follow the date).
std::string tables(const ScratchDatabase& db) {
  auto r = db.sql(
      "SELECT coalesce(string_agg(relname, ',' ORDER BY relname), '') FROM pg_class "
      "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition");
  return std::string(r.get(0, 0));
}

std::vector<Migration> two_test_migrations(const std::string& second_up) {
  return {{1, "first", "CREATE TABLE first_table (id int)", "DROP TABLE first_table"},
          {2, "second", second_up, "DROP TABLE second_table"}};
}

}  // namespace

TEST_CASE("the embedded migrations pair up and start with 0001_api_keys") {
  const auto migrations = embedded_migrations();
  REQUIRE_FALSE(migrations.empty());
  CHECK(migrations[0].version == 1);
  CHECK(migrations[0].name == "api_keys");
  CHECK(migrations[0].up_sql.find("CREATE TABLE api_keys") != std::string::npos);
  CHECK(migrations[0].down_sql.find("DROP TABLE IF EXISTS api_keys") != std::string::npos);
}

TEST_CASE("load_migrations rejects files that do not pair up or are misnamed") {
  using keygate::store::EmbeddedSqlFile;
  using keygate::store::load_migrations;
  CHECK_THROWS_AS(load_migrations({{"0001_a.up.sql", "x"}}), std::logic_error);
  CHECK_THROWS_AS(load_migrations({{"a.up.sql", "x"}, {"a.down.sql", "y"}}), std::logic_error);
  CHECK_THROWS_AS(load_migrations({{"0001_a.sql", "x"}}), std::logic_error);
  CHECK_THROWS_AS(load_migrations({{"0001_a.up.sql", "x"}, {"0001_b.down.sql", "y"}}),
                  std::logic_error);
  const auto ok = load_migrations({{"0002_b.down.sql", "d2"}, {"0002_b.up.sql", "u2"},
                                   {"0001_a.down.sql", "d1"}, {"0001_a.up.sql", "u1"}});
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].version == 1);
  CHECK(ok[1].up_sql == "u2");
}

TEST_CASE("migrate up applies everything once, up again is a no-op, status reports it") {
  ScratchDatabase db;
  auto pending = status(db.dsn());
  REQUIRE_MESSAGE(pending.ok(), pending.error);
  REQUIRE_FALSE(pending.states.empty());
  for (const auto& s : pending.states) CHECK_FALSE(s.applied);

  auto first = up(db.dsn());
  REQUIRE_MESSAGE(first.ok(), first.error);
  CHECK(first.changed.size() == embedded_migrations().size());
  CHECK(tables(db) == "api_key_audit,api_key_quota_usage,api_key_usage,api_keys,schema_migrations");

  auto second = up(db.dsn());
  REQUIRE_MESSAGE(second.ok(), second.error);
  CHECK(second.changed.empty());

  auto applied = status(db.dsn());
  REQUIRE(applied.ok());
  for (const auto& s : applied.states) {
    CHECK(s.applied);
    CHECK(s.applied_at.has_value());
  }
  CHECK(db.sql("SELECT count(*) FROM schema_migrations").get(0, 0) ==
        std::to_string(embedded_migrations().size()));
}

TEST_CASE("migrate down rolls back the latest migration, down --all everything, up restores") {
  ScratchDatabase db;
  const auto migrations = two_test_migrations("CREATE TABLE second_table (id int)");
  REQUIRE(up(db.dsn(), migrations).ok());
  CHECK(tables(db) == "first_table,schema_migrations,second_table");

  auto one = down(db.dsn(), false, migrations);
  REQUIRE_MESSAGE(one.ok(), one.error);
  REQUIRE(one.changed.size() == 1);
  CHECK(one.changed[0].version == 2);
  CHECK(tables(db) == "first_table,schema_migrations");

  REQUIRE(up(db.dsn(), migrations).ok());
  auto all = down(db.dsn(), true, migrations);
  REQUIRE(all.ok());
  CHECK(all.changed.size() == 2);
  CHECK(tables(db) == "schema_migrations");

  auto nothing = down(db.dsn(), false, migrations);
  CHECK(nothing.ok());
  CHECK(nothing.changed.empty());
}

TEST_CASE("the real schema goes down and up again cleanly") {
  ScratchDatabase db;
  REQUIRE(up(db.dsn()).ok());
  auto all = down(db.dsn(), true);
  REQUIRE_MESSAGE(all.ok(), all.error);
  CHECK(tables(db) == "schema_migrations");
  CHECK(db.sql("SELECT count(*) FROM pg_proc WHERE proname LIKE 'api_keys_%'").get(0, 0) == "0");
  REQUIRE(up(db.dsn()).ok());
  CHECK(tables(db) == "api_key_audit,api_key_quota_usage,api_key_usage,api_keys,schema_migrations");
}

TEST_CASE("a failing migration leaves no trace: its changes and its record are rolled back") {
  ScratchDatabase db;
  const auto migrations = two_test_migrations("CREATE TABLE second_table (id int); SELECT 1/0");
  auto run = up(db.dsn(), migrations);
  CHECK_FALSE(run.ok());
  CHECK(run.error.find("migration 0002_second failed") == 0);
  CHECK(run.error.find("division by zero") != std::string::npos);
  CHECK(run.changed.size() == 1);
  CHECK(tables(db) == "first_table,schema_migrations");
  CHECK(db.sql("SELECT string_agg(version::text, ',') FROM schema_migrations").get(0, 0) == "1");
  // The lock was released: another run can proceed (and fails the same way, quickly).
  CHECK_FALSE(up(db.dsn(), migrations).ok());
}

TEST_CASE("two concurrent migrate up runs apply each migration exactly once") {
  ScratchDatabase db;
  // The first migration is slow so that the two runs overlap.
  std::vector<Migration> migrations{
      {1, "slow", "SELECT pg_sleep(0.3); CREATE TABLE slow_table (id int)", "DROP TABLE slow_table"},
      {2, "next", "CREATE TABLE next_table (id int)", "DROP TABLE next_table"}};
  asio::io_context io;
  auto run_up = [&]() -> asio::awaitable<MigrationRun> {
    PgConnection connection(co_await asio::this_coro::executor);
    auto connected = co_await connection.connect(db.dsn(), 5s);
    if (!connected.ok()) throw std::runtime_error(connected.error());
    Migrator migrator(connection, migrations);
    co_return co_await migrator.up();
  };
  auto a = asio::co_spawn(io, run_up(), asio::use_future);
  auto b = asio::co_spawn(io, run_up(), asio::use_future);
  io.run_for(20s);
  REQUIRE(a.wait_for(0s) == std::future_status::ready);
  REQUIRE(b.wait_for(0s) == std::future_status::ready);
  const MigrationRun ra = a.get();
  const MigrationRun rb = b.get();
  CHECK_MESSAGE(ra.ok(), ra.error);
  CHECK_MESSAGE(rb.ok(), rb.error);
  CHECK(ra.changed.size() + rb.changed.size() == 2);
  CHECK(tables(db) == "next_table,schema_migrations,slow_table");
}

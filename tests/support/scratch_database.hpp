#pragma once
// A PostgreSQL database of one test's own: kg_test_<random>, created on the server named by
// KEYGATE_TEST_PG_DSN and dropped (WITH (FORCE)) when the object goes, so tests running in
// parallel against one server never see each other's rows or schema.
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include "store/migrator.hpp"
#include "store/pg_connection.hpp"
#include "support/run_coro.hpp"
#include "support/test_env.hpp"

namespace keygate::test {

// The same server, another database: URIs get their path replaced, key=value strings a dbname.
inline std::string dsn_with_database(std::string_view dsn, std::string_view database) {
  const auto scheme = dsn.find("://");
  if (scheme == std::string_view::npos) return std::string(dsn) + " dbname=" + std::string(database);
  const auto path = dsn.find('/', scheme + 3);
  const auto query = dsn.find('?', scheme + 3);
  std::string out(dsn.substr(0, std::min(path, query)));
  out += "/" + std::string(database);
  if (query != std::string_view::npos) out += dsn.substr(query);
  return out;
}

// Runs one statement on `dsn` from synchronous test code; throws with the error on failure.
inline store::PgResult run_sql(const std::string& dsn, const std::string& sql) {
  return run_coro([&]() -> boost::asio::awaitable<store::PgResult> {
    store::PgConnection connection(co_await boost::asio::this_coro::executor);
    store::PgResult connected = co_await connection.connect(dsn, std::chrono::seconds(10));
    if (!connected.ok()) throw std::runtime_error(connected.error());
    store::PgResult result = co_await connection.execute(sql, std::chrono::seconds(30));
    if (!result.ok()) throw std::runtime_error(result.error() + " in: " + sql);
    co_return result;
  }());
}

class ScratchDatabase {
 public:
  ScratchDatabase() {
    std::random_device random;
    std::uniform_int_distribution<unsigned long long> digits;
    name_ = "kg_test_" + std::to_string(digits(random) % 1000000000000ull);
    admin_dsn_ = postgres_dsn();
    run_sql(admin_dsn_, "CREATE DATABASE " + name_);
    dsn_ = dsn_with_database(admin_dsn_, name_);
  }
  ~ScratchDatabase() {
    try {
      run_sql(admin_dsn_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
      // Left behind on a throwaway server: harmless, and a destructor must not throw.
    }
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& dsn() const { return dsn_; }
  const std::string& name() const { return name_; }
  store::PgResult sql(const std::string& statement) const { return run_sql(dsn_, statement); }

  // Applies every embedded migration (keygate's whole schema); throws on failure.
  void migrate_up() const {
    run_coro([&]() -> boost::asio::awaitable<void> {
      store::PgConnection connection(co_await boost::asio::this_coro::executor);
      store::PgResult connected = co_await connection.connect(dsn_, std::chrono::seconds(10));
      if (!connected.ok()) throw std::runtime_error(connected.error());
      store::Migrator migrator(connection, store::embedded_migrations());
      auto run = co_await migrator.up();
      if (!run.ok()) throw std::runtime_error(run.error);
    }());
  }

 private:
  std::string name_;
  std::string admin_dsn_;
  std::string dsn_;
};

}  // namespace keygate::test

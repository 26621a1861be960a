#pragma once
// Schema migrations: NNNN_name.up.sql / .down.sql pairs (compiled in from store/migrations/),
// recorded in schema_migrations. Each migration runs in one transaction together with its
// schema_migrations row, and a session advisory lock is held for the whole run, so two
// processes running `migrate up` at once apply each migration exactly once.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/embedded_migrations.hpp"
#include "store/key_record.hpp"
#include "store/pg_connection.hpp"

namespace keygate::store {

struct Migration {
  std::int64_t version = 0;
  std::string name;  // "api_keys"
  std::string up_sql;
  std::string down_sql;
};

// Pairs the files by version; a malformed set (no pair, bad name, duplicate version) is a build
// bug and throws std::logic_error. Sorted by version.
std::vector<Migration> load_migrations(const std::vector<EmbeddedSqlFile>& files);
std::vector<Migration> embedded_migrations();

struct MigrationState {
  std::int64_t version = 0;
  std::string name;
  bool applied = false;
  std::optional<TimePoint> applied_at;
  bool known = true;  // false: applied in the database but unknown to this binary
};

struct MigrationRun {
  PgStatus status = PgStatus::ok;
  std::string error;
  std::vector<MigrationState> changed;  // applied by up, rolled back by down (in order)
  std::vector<MigrationState> states;   // status(): every migration, by version

  bool ok() const { return status == PgStatus::ok; }
};

struct MigratorOptions {
  std::chrono::milliseconds lock_timeout{30000};        // waiting for another migrator
  std::chrono::milliseconds statement_timeout{600000};  // one migration's SQL
};

// Runs on one connected PgConnection (the advisory lock belongs to its session).
class Migrator {
 public:
  Migrator(PgConnection& connection, std::vector<Migration> migrations, MigratorOptions options = {});

  boost::asio::awaitable<MigrationRun> up();
  boost::asio::awaitable<MigrationRun> down(bool all);
  boost::asio::awaitable<MigrationRun> status();

 private:
  boost::asio::awaitable<PgResult> lock();
  boost::asio::awaitable<void> unlock();
  boost::asio::awaitable<PgResult> read_applied(std::vector<MigrationState>& applied);
  boost::asio::awaitable<PgResult> run_in_transaction(const std::string& sql, std::string record_sql,
                                                      PgParams record_params);

  PgConnection& connection_;
  std::vector<Migration> migrations_;
  MigratorOptions options_;
};

}  // namespace keygate::store

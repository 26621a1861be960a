#include "store/migrator.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <stdexcept>

namespace keygate::store {

namespace asio = boost::asio;

namespace {

// Fixed advisory lock key ("keygate" in ASCII), shared by every keygate migrator.
constexpr std::string_view lock_key = "30198988607436901";

constexpr std::chrono::milliseconds bookkeeping_timeout{10000};

std::optional<std::int64_t> to_int64(std::string_view text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

TimePoint from_micros(std::int64_t micros) {
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(micros)));
}

MigrationRun failed(const PgResult& result, const std::string& context = {}) {
  MigrationRun run;
  run.status = result.status();
  run.error = context.empty() ? result.error() : context + ": " + result.error();
  return run;
}

// Built outside coroutines: g++ 12 mis-builds braced temporaries inside coroutine bodies.
MigrationState state_of(const Migration& m, bool applied, std::optional<TimePoint> applied_at) {
  MigrationState state;
  state.version = m.version;
  state.name = m.name;
  state.applied = applied;
  state.applied_at = applied_at;
  return state;
}

std::string label(std::int64_t version, const std::string& name) {
  std::string digits = std::to_string(version);
  if (digits.size() < 4) digits.insert(0, 4 - digits.size(), '0');
  return digits + "_" + name;
}

}  // namespace

std::vector<Migration> load_migrations(const std::vector<EmbeddedSqlFile>& files) {
  std::map<std::int64_t, Migration> by_version;
  std::map<std::int64_t, int> halves;
  for (const auto& file : files) {
    std::string_view name = file.file_name;
    bool up = false;
    if (name.ends_with(".up.sql")) {
      up = true;
      name.remove_suffix(7);
    } else if (name.ends_with(".down.sql")) {
      name.remove_suffix(9);
    } else {
      throw std::logic_error("migration file without .up.sql/.down.sql: " + std::string(file.file_name));
    }
    const auto underscore = name.find('_');
    const auto version = underscore == std::string_view::npos
                             ? std::nullopt
                             : to_int64(name.substr(0, underscore));
    if (!version || *version <= 0 || underscore + 1 >= name.size()) {
      throw std::logic_error("migration file not named NNNN_name: " + std::string(file.file_name));
    }
    Migration& m = by_version[*version];
    const std::string base(name.substr(underscore + 1));
    if (!m.name.empty() && m.name != base) {
      throw std::logic_error("two migrations with version " + std::to_string(*version));
    }
    m.version = *version;
    m.name = base;
    std::string& sql = up ? m.up_sql : m.down_sql;
    if (!sql.empty()) throw std::logic_error("duplicate migration file " + std::string(file.file_name));
    sql = std::string(file.sql);
    halves[*version] += up ? 1 : 2;
  }
  std::vector<Migration> migrations;
  for (auto& [version, m] : by_version) {
    if (halves[version] != 3) {
      throw std::logic_error("migration " + label(version, m.name) + " lacks its up or down file");
    }
    migrations.push_back(std::move(m));
  }
  return migrations;
}

std::vector<Migration> embedded_migrations() { return load_migrations(embedded_migration_files()); }

Migrator::Migrator(PgConnection& connection, std::vector<Migration> migrations, MigratorOptions options)
    : connection_(connection), migrations_(std::move(migrations)), options_(options) {
  std::sort(migrations_.begin(), migrations_.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
}

asio::awaitable<PgResult> Migrator::lock() {
  // lock_timeout makes the server give up waiting, so the session stays healthy on timeout.
  const std::string sql = "SET lock_timeout = " + std::to_string(options_.lock_timeout.count()) +
                          "; SELECT pg_advisory_lock(" + std::string(lock_key) + "); RESET lock_timeout";
  PgResult locked = co_await connection_.execute(sql, options_.lock_timeout + bookkeeping_timeout);
  if (!locked.ok() && locked.sqlstate() == "55P03") {
    co_return PgResult::failure(PgStatus::timeout,
                                "another keygate migrate held the migration lock for " +
                                    std::to_string(options_.lock_timeout.count()) + " ms");
  }
  co_return locked;
}

asio::awaitable<void> Migrator::unlock() {
  if (!connection_.connected()) co_return;  // the session ended: the lock went with it
  const std::string sql = "SELECT pg_advisory_unlock(" + std::string(lock_key) + ")";
  (void)co_await connection_.execute(sql, bookkeeping_timeout);
}

// Versions recorded in schema_migrations (none when the table does not exist yet).
asio::awaitable<PgResult> Migrator::read_applied(std::vector<MigrationState>& applied) {
  PgResult exists = co_await connection_.execute(
      "SELECT to_regclass('schema_migrations') IS NOT NULL", bookkeeping_timeout);
  if (!exists.ok() || exists.get(0, 0) != "t") co_return exists;
  PgResult rows = co_await connection_.execute(
      "SELECT version, name, (extract(epoch FROM applied_at) * 1000000)::bigint "
      "FROM schema_migrations ORDER BY version",
      bookkeeping_timeout);
  if (!rows.ok()) co_return rows;
  for (int r = 0; r < rows.rows(); ++r) {
    MigrationState state;
    state.version = to_int64(rows.get(r, 0)).value_or(0);
    state.name = std::string(rows.get(r, 1));
    state.applied = true;
    if (auto micros = to_int64(rows.get(r, 2))) state.applied_at = from_micros(*micros);
    applied.push_back(std::move(state));
  }
  co_return rows;
}

asio::awaitable<PgResult> Migrator::run_in_transaction(const std::string& sql, std::string record_sql,
                                                       PgParams record_params) {
  PgResult result = co_await connection_.execute("BEGIN", bookkeeping_timeout);
  if (result.ok()) result = co_await connection_.execute(sql, options_.statement_timeout);
  if (result.ok()) {
    result = co_await connection_.query(std::move(record_sql), std::move(record_params),
                                        bookkeeping_timeout);
  }
  if (result.ok()) result = co_await connection_.execute("COMMIT", bookkeeping_timeout);
  if (!result.ok() && connection_.connected()) {
    (void)co_await connection_.execute("ROLLBACK", bookkeeping_timeout);
  }
  co_return result;
}

asio::awaitable<MigrationRun> Migrator::up() {
  PgResult locked = co_await lock();
  if (!locked.ok()) co_return failed(locked);
  MigrationRun run;
  PgResult table = co_await connection_.execute(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version bigint PRIMARY KEY,"
      " name text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())",
      bookkeeping_timeout);
  std::vector<MigrationState> applied;
  if (table.ok()) table = co_await read_applied(applied);
  if (!table.ok()) {
    run = failed(table);
  } else {
    for (const Migration& m : migrations_) {
      const bool done = std::any_of(applied.begin(), applied.end(),
                                    [&](const MigrationState& a) { return a.version == m.version; });
      if (done) continue;
      PgParams record;
      record.emplace_back(std::to_string(m.version));
      record.emplace_back(m.name);
      PgResult result = co_await run_in_transaction(
          m.up_sql, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", std::move(record));
      if (!result.ok()) {
        auto changed = std::move(run.changed);
        run = failed(result, "migration " + label(m.version, m.name) + " failed");
        run.changed = std::move(changed);
        break;
      }
      run.changed.push_back(state_of(m, true, Clock::now()));
    }
  }
  co_await unlock();
  co_return run;
}

asio::awaitable<MigrationRun> Migrator::down(bool all) {
  PgResult locked = co_await lock();
  if (!locked.ok()) co_return failed(locked);
  MigrationRun run;
  std::vector<MigrationState> applied;
  PgResult read = co_await read_applied(applied);
  if (!read.ok()) {
    run = failed(read);
  } else {
    std::reverse(applied.begin(), applied.end());
    if (!all && applied.size() > 1) applied.resize(1);
    for (const MigrationState& target : applied) {
      auto known = std::find_if(migrations_.begin(), migrations_.end(),
                                [&](const Migration& m) { return m.version == target.version; });
      if (known == migrations_.end()) {
        run.status = PgStatus::query_error;
        run.error = "cannot roll back migration " + label(target.version, target.name) +
                    ": this keygate does not know it";
        break;
      }
      PgParams record;
      record.emplace_back(std::to_string(known->version));
      PgResult result = co_await run_in_transaction(
          known->down_sql, "DELETE FROM schema_migrations WHERE version = $1", std::move(record));
      if (!result.ok()) {
        auto changed = std::move(run.changed);
        run = failed(result, "rolling back migration " + label(known->version, known->name) + " failed");
        run.changed = std::move(changed);
        break;
      }
      run.changed.push_back(state_of(*known, false, std::nullopt));
    }
  }
  co_await unlock();
  co_return run;
}

asio::awaitable<MigrationRun> Migrator::status() {
  std::vector<MigrationState> applied;
  PgResult read = co_await read_applied(applied);
  if (!read.ok()) co_return failed(read);
  MigrationRun run;
  for (const Migration& m : migrations_) {
    MigrationState state = state_of(m, false, std::nullopt);
    for (const auto& a : applied) {
      if (a.version == m.version) {
        state.applied = true;
        state.applied_at = a.applied_at;
      }
    }
    run.states.push_back(std::move(state));
  }
  for (auto& a : applied) {
    const bool known = std::any_of(migrations_.begin(), migrations_.end(),
                                   [&](const Migration& m) { return m.version == a.version; });
    if (!known) {
      a.known = false;
      run.states.push_back(a);
    }
  }
  std::sort(run.states.begin(), run.states.end(),
            [](const MigrationState& a, const MigrationState& b) { return a.version < b.version; });
  co_return run;
}

}  // namespace keygate::store

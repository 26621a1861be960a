// keygate migrate [up | down [--all] | status]: the embedded SQL migrations, applied with the
// same PostgreSQL client the proxy uses (on an io_context of its own).
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "app/cli_run.hpp"
#include "core/time_format.hpp"
#include "store/migrator.hpp"
#include "store/pg_connection.hpp"

namespace keygate::app {

namespace {

namespace asio = boost::asio;

std::string label(const store::MigrationState& m) {
  std::string version = std::to_string(m.version);
  if (version.size() < 4) version.insert(0, 4 - version.size(), '0');
  return version + "_" + m.name;
}

void print_status(const std::vector<store::MigrationState>& states) {
  std::size_t width = 9;
  for (const auto& s : states) width = std::max(width, label(s).size());
  std::printf("%-*s  %-8s  %s\n", static_cast<int>(width), "MIGRATION", "STATUS", "APPLIED AT");
  for (const auto& s : states) {
    const std::string state = !s.applied ? "pending" : s.known ? "applied" : "unknown";
    const std::string at = s.applied_at ? core::format_utc_seconds(*s.applied_at) : "-";
    std::printf("%-*s  %-8s  %s\n", static_cast<int>(width), label(s).c_str(), state.c_str(), at.c_str());
  }
}

enum class Action { up, down, down_all, status };

Action parse_action(Args args) {
  if (args.empty()) return Action::up;
  const std::string& verb = args[0];
  if (verb == "up" || verb == "status") {
    if (args.size() > 1) {
      throw UsageError("migrate " + verb + ": unexpected argument " + quoted_argument(args[1]));
    }
    return verb == "up" ? Action::up : Action::status;
  }
  if (verb == "down") {
    if (args.size() == 1) return Action::down;
    if (args[1] == "--all" && args.size() == 2) return Action::down_all;
    throw UsageError("migrate down: unexpected argument " + quoted_argument(args[1]) + " (only --all)");
  }
  throw UsageError("migrate: unknown subcommand " + quoted_argument(verb) + " (expected up, down or status)");
}

asio::awaitable<int> migrate(const Config& config, Action action) {
  store::PgConnection connection(co_await asio::this_coro::executor);
  if (!co_await connect_postgres(connection, config)) co_return exit_failure;
  store::Migrator migrator(connection, store::embedded_migrations());
  store::MigrationRun run;
  switch (action) {
    case Action::up: run = co_await migrator.up(); break;
    case Action::down: run = co_await migrator.down(false); break;
    case Action::down_all: run = co_await migrator.down(true); break;
    case Action::status: run = co_await migrator.status(); break;
  }
  for (const auto& m : run.changed) {
    std::printf("%s %s\n", action == Action::up ? "applied" : "rolled back", label(m).c_str());
  }
  if (!run.ok()) co_return report_failure(run.error);
  if (action == Action::status) print_status(run.states);
  else if (run.changed.empty()) std::puts(action == Action::up ? "schema is up to date" : "nothing to roll back");
  co_return exit_ok;
}

}  // namespace

int run_migrate(const Config& config, Args args) {
  const Action action = parse_action(args);
  if (config.store.schema == Config::Store::Schema::custom) {
    throw UsageError("migrate: store.schema is custom: keygate's migrations create its own api_keys; "
                     "the table " + config.store.custom.table + " is yours and keygate leaves it as it is");
  }
  asio::io_context io;
  return run_to_completion(io, migrate(config, action));
}

}  // namespace keygate::app

// keygate usage ID [--since 1h] [--json]: one key's requests over a recent window, by status,
// with p50/p99 response times, from api_key_usage (the usage log, issue #5).
#include <boost/asio/this_coro.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "app/cli_run.hpp"
#include "core/duration.hpp"
#include "core/hex.hpp"
#include "store/pg_connection.hpp"
#include "store/usage_report.hpp"

namespace keygate::app {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::chrono::hours default_window{24};
constexpr std::chrono::seconds report_timeout{30};

struct UsageArgs {
  std::string id;
  std::chrono::milliseconds since = default_window;
  bool json = false;
};

UsageArgs parse_usage_args(Args args) {
  const ParsedArgs parsed = parse_args("usage", args, {"--since"}, {"--json"}, 1);
  UsageArgs usage;
  if (parsed.positional.empty()) {
    throw UsageError("usage: missing key ID (keygate usage ID [--since 1h] [--json])");
  }
  usage.id = parsed.positional[0];
  if (!core::is_uuid(usage.id)) {
    throw UsageError("usage: ID: expected a key id (a uuid), got " + quoted_argument(usage.id));
  }
  if (auto since = parsed.value("--since")) {
    usage.since = parse_duration_flag("--since", *since, "15m, 1h or 7d", false);
  }
  usage.json = parsed.has("--json");
  return usage;
}

std::string format_ms(std::optional<double> ms) {
  if (!ms) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", *ms);
  return buffer;
}

json::value json_ms(std::optional<double> ms) {
  if (!ms) return nullptr;
  return static_cast<double>(static_cast<long long>(*ms * 1000.0 + 0.5)) / 1000.0;
}

asio::awaitable<int> report(const Config& config, UsageArgs args) {
  store::PgConnection connection(co_await asio::this_coro::executor);
  if (!co_await connect_postgres(connection, config)) co_return exit_failure;

  store::PgParams key_params;
  key_params.emplace_back(args.id);
  store::PgResult key = co_await connection.query(
      "SELECT key_prefix, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
      "FROM api_keys WHERE id = $1",
      std::move(key_params), report_timeout);
  if (!key.ok()) co_return report_failure(key.error());
  if (key.rows() == 0) co_return report_failure("usage: no key with id " + args.id);
  const std::string prefix(key.get(0, 0));

  store::PgResult stats = co_await connection.query(store::usage_by_status_sql(),
                                                    store::usage_params(args.id, args.since), report_timeout);
  if (!stats.ok()) co_return report_failure(stats.error());
  store::UsageReport report;
  if (!store::parse_usage_report(stats, nullptr, report)) co_return report_failure("usage: unexpected api_key_usage row");
  const std::vector<store::UsageLine>& by_status = report.by_status;
  const store::UsageLine& total = report.total;
  const std::string& from = report.from;
  const std::string window = core::format_duration(args.since);

  if (args.json) {
    json::object out;
    out["id"] = args.id;
    out["key_prefix"] = prefix;
    out["since"] = window;
    if (from.empty()) out["from"] = nullptr;
    else out["from"] = from;
    out["requests"] = total.requests;
    out["p50_ms"] = json_ms(total.p50_ms);
    out["p99_ms"] = json_ms(total.p99_ms);
    json::array statuses;
    for (const store::UsageLine& s : by_status) {
      json::object o;
      if (s.status) o["status"] = *s.status;
      else o["status"] = nullptr;
      o["requests"] = s.requests;
      o["p50_ms"] = json_ms(s.p50_ms);
      o["p99_ms"] = json_ms(s.p99_ms);
      statuses.push_back(std::move(o));
    }
    out["by_status"] = std::move(statuses);
    std::printf("%s\n", json::serialize(out).c_str());
    co_return exit_ok;
  }

  std::printf("key %s (%s...)\n", args.id.c_str(), prefix.c_str());
  std::printf("requests in the last %s: %lld\n", window.c_str(), total.requests);
  if (total.requests == 0) co_return exit_ok;
  std::printf("\n%-8s %10s %10s %10s\n", "status", "requests", "p50 ms", "p99 ms");
  auto row = [](const std::string& label, const store::UsageLine& s) {
    std::printf("%-8s %10lld %10s %10s\n", label.c_str(), s.requests, format_ms(s.p50_ms).c_str(),
                format_ms(s.p99_ms).c_str());
  };
  for (const store::UsageLine& s : by_status) row(s.status ? std::to_string(*s.status) : "none", s);
  row("all", total);
  co_return exit_ok;
}

}  // namespace

int run_usage(const Config& config, Args args) {
  UsageArgs parsed = parse_usage_args(args);
  asio::io_context io;
  return run_to_completion(io, report(config, std::move(parsed)));
}

}  // namespace keygate::app

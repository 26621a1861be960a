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

struct StatusLine {
  std::optional<int> status;  // nullopt: all statuses
  long long requests = 0;
  std::optional<double> p50_ms, p99_ms;
};

std::optional<double> to_double(std::optional<std::string_view> text) {
  if (!text) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
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

  store::PgParams params;
  params.emplace_back(args.id);
  params.emplace_back(std::to_string(args.since.count()) + " milliseconds");
  store::PgResult stats = co_await connection.query(
      "WITH window_start AS (SELECT now() - $2::interval AS at) "
      "SELECT GROUPING(status_code), status_code, count(*), "
      "  percentile_cont(0.5) WITHIN GROUP (ORDER BY coalesce(response_time_us, response_time_ms * 1000)) / 1000.0, "
      "  percentile_cont(0.99) WITHIN GROUP (ORDER BY coalesce(response_time_us, response_time_ms * 1000)) / 1000.0, "
      "  (SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM window_start) "
      "FROM api_key_usage "
      "WHERE api_key_id = $1 AND created_at >= (SELECT at FROM window_start) "
      "GROUP BY ROLLUP (status_code) ORDER BY GROUPING(status_code), status_code",
      std::move(params), report_timeout);
  if (!stats.ok()) co_return report_failure(stats.error());

  std::vector<StatusLine> by_status;
  StatusLine total;
  for (int r = 0; r < stats.rows(); ++r) {
    StatusLine line;
    if (!stats.is_null(r, 1)) line.status = std::stoi(std::string(stats.get(r, 1)));
    line.requests = std::stoll(std::string(stats.get(r, 2)));
    line.p50_ms = to_double(stats.get_optional(r, 3));
    line.p99_ms = to_double(stats.get_optional(r, 4));
    if (stats.get(r, 0) == "1") total = line;
    else by_status.push_back(line);
  }
  // With no rows at all there is no ROLLUP row either: the window start comes from `now`.
  const std::string from = stats.rows() > 0 ? std::string(stats.get(0, 5)) : std::string();
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
    for (const StatusLine& s : by_status) {
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
  auto row = [](const std::string& label, const StatusLine& s) {
    std::printf("%-8s %10lld %10s %10s\n", label.c_str(), s.requests, format_ms(s.p50_ms).c_str(),
                format_ms(s.p99_ms).c_str());
  };
  for (const StatusLine& s : by_status) row(s.status ? std::to_string(*s.status) : "none", s);
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

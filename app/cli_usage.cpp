// keygate usage ID [--since 1h] [--json]: one key's requests over a recent window, by status,
// with p50/p99 response times, from api_key_usage (the usage log, issue #5).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "core/duration.hpp"
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

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

UsageArgs parse_usage_args(Args args) {
  UsageArgs parsed;
  bool have_since = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--json") {
      if (parsed.json) throw UsageError("--json: given twice");
      parsed.json = true;
    } else if (arg == "--since" || arg.starts_with("--since=")) {
      if (have_since) throw UsageError("--since: given twice");
      have_since = true;
      std::string value;
      if (arg.size() > 7) value = arg.substr(8);
      else if (i + 1 < args.size()) value = args[++i];
      else throw UsageError("--since: missing value");
      const auto d = core::parse_duration(value);
      if (!d || d->count() <= 0) {
        throw UsageError("--since: expected a duration like 15m, 1h or 7d, got \"" + value + "\"");
      }
      parsed.since = *d;
    } else if (arg.starts_with("--")) {
      throw UsageError("usage: unknown option " + arg.substr(0, arg.find('=')));
    } else if (!parsed.id.empty()) {
      throw UsageError("usage: unexpected argument \"" + arg + "\"");
    } else {
      if (!is_uuid(arg)) throw UsageError("usage: ID: expected a key id (a uuid), got \"" + arg + "\"");
      parsed.id = arg;
    }
  }
  if (parsed.id.empty()) throw UsageError("usage: missing key ID (keygate usage ID [--since 1h] [--json])");
  return parsed;
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

// Runs one command coroutine to completion; its exceptions reach main unchanged.
int run_to_completion(asio::io_context& io, asio::awaitable<int> command) {
  std::exception_ptr failure;
  int code = exit_failure;
  asio::co_spawn(io, std::move(command), [&](std::exception_ptr e, int result) {
    failure = e;
    code = result;
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return code;
}

int fail(const std::string& message) {
  std::fprintf(stderr, "keygate: %s\n", message.c_str());
  return exit_failure;
}

asio::awaitable<int> report(const Config& config, UsageArgs args) {
  store::PgConnection connection(co_await asio::this_coro::executor);
  store::PgResult connected = co_await connection.connect(config.postgres.dsn, config.postgres.connect_timeout);
  if (!connected.ok()) co_return fail(connected.error());

  store::PgParams key_params;
  key_params.emplace_back(args.id);
  store::PgResult key = co_await connection.query(
      "SELECT key_prefix, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
      "FROM api_keys WHERE id = $1",
      std::move(key_params), report_timeout);
  if (!key.ok()) co_return fail(key.error());
  if (key.rows() == 0) co_return fail("usage: no key with id " + args.id);
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
  if (!stats.ok()) co_return fail(stats.error());

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

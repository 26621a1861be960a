#include "store/usage_report.hpp"

#include <charconv>
#include <chrono>

namespace keygate::store {

namespace {

// The response time in ms of each row: the microseconds keygate writes, else seed 003's ms.
#define KEYGATE_USAGE_MS "coalesce(response_time_us, response_time_ms * 1000) / 1000.0"

std::optional<double> to_double(std::optional<std::string_view> text) {
  if (!text) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
}

bool to_integer(std::string_view text, long long& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

const char* usage_by_status_sql() {
  return "WITH window_start AS (SELECT now() - $2::interval AS at) "
         "SELECT GROUPING(status_code), status_code, count(*), "
         "  percentile_cont(0.5) WITHIN GROUP (ORDER BY " KEYGATE_USAGE_MS "), "
         "  percentile_cont(0.99) WITHIN GROUP (ORDER BY " KEYGATE_USAGE_MS "), "
         "  (SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM window_start) "
         "FROM api_key_usage "
         "WHERE api_key_id = $1::uuid AND created_at >= (SELECT at FROM window_start) "
         "GROUP BY ROLLUP (status_code) ORDER BY GROUPING(status_code), status_code";
}

const char* usage_by_hour_sql() {
  return "SELECT to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"'), "
         "  count(*), "
         "  percentile_cont(0.5) WITHIN GROUP (ORDER BY " KEYGATE_USAGE_MS "), "
         "  percentile_cont(0.99) WITHIN GROUP (ORDER BY " KEYGATE_USAGE_MS ") "
         "FROM api_key_usage WHERE api_key_id = $1::uuid AND created_at >= now() - $2::interval "
         "GROUP BY 1 ORDER BY 1";
}

PgParams usage_params(const std::string& key_id, std::chrono::milliseconds window) {
  PgParams params;
  params.emplace_back(key_id);
  params.emplace_back(std::to_string(window.count()) + " milliseconds");
  return params;
}

bool parse_usage_report(const PgResult& by_status, const PgResult* hours, UsageReport& out) {
  for (int r = 0; r < by_status.rows(); ++r) {
    UsageLine line;
    if (!by_status.is_null(r, 1)) {
      long long status = 0;
      if (!to_integer(by_status.get(r, 1), status)) return false;
      line.status = static_cast<int>(status);
    }
    if (!to_integer(by_status.get(r, 2), line.requests)) return false;
    line.p50_ms = to_double(by_status.get_optional(r, 3));
    line.p99_ms = to_double(by_status.get_optional(r, 4));
    if (by_status.get(r, 0) == "1") out.total = line;
    else out.by_status.push_back(line);
  }
  // With no rows at all there is no ROLLUP row either, and no window start.
  if (by_status.rows() > 0) out.from = std::string(by_status.get(0, 5));
  if (hours == nullptr) return true;
  const PgResult& by_hour = *hours;
  for (int r = 0; r < by_hour.rows(); ++r) {
    UsageLine line;
    line.hour = std::string(by_hour.get(r, 0));
    if (!to_integer(by_hour.get(r, 1), line.requests)) return false;
    line.p50_ms = to_double(by_hour.get_optional(r, 2));
    line.p99_ms = to_double(by_hour.get_optional(r, 3));
    out.by_hour.push_back(std::move(line));
  }
  return true;
}

}  // namespace keygate::store

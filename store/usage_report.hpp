#pragma once
// One key's requests over a recent window, from api_key_usage: by status and by UTC hour, with
// p50/p99 response times. The statements and the decoding of their rows; the caller runs them
// (`keygate usage` on its connection, the API in its owner-scoped transaction).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store/pg_connection.hpp"

namespace keygate::store {

struct UsageLine {
  std::optional<int> status;  // by status: the status (nullopt: none was recorded)
  std::string hour;           // by hour: "2026-12-04T03:00:00Z"
  long long requests = 0;
  std::optional<double> p50_ms;
  std::optional<double> p99_ms;
};

struct UsageReport {
  std::string from;  // the window's start, RFC 3339 UTC
  UsageLine total;
  std::vector<UsageLine> by_status;
  std::vector<UsageLine> by_hour;  // oldest first; hours without requests are left out
};

// $1 the key id (uuid), $2 the window as an interval ("86400000 milliseconds").
const char* usage_by_status_sql();
const char* usage_by_hour_sql();
PgParams usage_params(const std::string& key_id, std::chrono::milliseconds window);
// The rows of the statements (false: a row keygate cannot read); by_hour may be null.
bool parse_usage_report(const PgResult& by_status, const PgResult* by_hour, UsageReport& out);

}  // namespace keygate::store

#include "store/usage_partitions.hpp"

#include <cstdio>

namespace keygate::store {

namespace {

constexpr std::string_view partition_prefix = "api_key_usage_p";

// The digits text[at, at + len) as a number; -1 when one is not a digit.
int digits_value(std::string_view text, std::size_t at, std::size_t len) {
  int v = 0;
  for (std::size_t i = at; i < at + len; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

// A day number of a year, month and day. A day past the month's end (31 February) counts on
// into the next month, as <chrono> defines it for a valid year and month.
std::optional<std::int32_t> day_number(int y, int m, int d) {
  if (y < 0 || m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
  using namespace std::chrono;
  const sys_days date{year{y} / month{static_cast<unsigned>(m)} / day{static_cast<unsigned>(d)}};
  return static_cast<std::int32_t>(date.time_since_epoch().count());
}

std::chrono::year_month_day date_of(std::int32_t day) {
  return std::chrono::year_month_day{std::chrono::sys_days{std::chrono::days{day}}};
}

std::string date_text(std::int32_t day, const char* format) {
  const auto date = date_of(day);
  char text[32];
  std::snprintf(text, sizeof text, format, static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return text;
}

std::string lock_statement() {
  return "SELECT pg_advisory_xact_lock(" + std::to_string(usage_partition_lock_key) + ");";
}

}  // namespace

std::int32_t usage_day_of(std::int64_t unix_us) {
  using namespace std::chrono;
  return static_cast<std::int32_t>(floor<days>(microseconds(unix_us)).count());
}

std::int32_t usage_today() {
  using namespace std::chrono;
  return usage_day_of(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count());
}

std::string usage_day_text(std::int32_t day) { return date_text(day, "%04d-%02u-%02u"); }

std::string usage_partition_name(std::int32_t day) {
  return std::string(partition_prefix) + date_text(day, "%04d%02u%02u");
}

std::optional<std::int32_t> usage_partition_day(std::string_view name) {
  if (name.size() != partition_prefix.size() + 8 || !name.starts_with(partition_prefix)) return std::nullopt;
  const std::string_view digits = name.substr(partition_prefix.size());
  return day_number(digits_value(digits, 0, 4), digits_value(digits, 4, 2), digits_value(digits, 6, 2));
}

std::optional<std::int32_t> usage_line_day(std::string_view line) {
  const auto tab = line.rfind('\t');
  if (tab == std::string_view::npos) return std::nullopt;
  const std::string_view ts = line.substr(tab + 1);
  if (ts.size() < 10 || ts[4] != '-' || ts[7] != '-') return std::nullopt;
  return day_number(digits_value(ts, 0, 4), digits_value(ts, 5, 2), digits_value(ts, 8, 2));
}

std::string create_usage_partitions_sql(const std::vector<std::int32_t>& days) {
  if (days.empty()) return {};
  std::string sql = lock_statement();
  for (const std::int32_t day : days) {
    sql += " CREATE TABLE IF NOT EXISTS " + usage_partition_name(day) +
           " PARTITION OF api_key_usage FOR VALUES FROM ('" + usage_day_text(day) +
           " 00:00:00+00') TO ('" + usage_day_text(day + 1) + " 00:00:00+00');";
  }
  return sql;
}

std::string drop_usage_partitions_sql(const std::vector<std::int32_t>& days) {
  if (days.empty()) return {};
  return lock_statement() + " DROP TABLE IF EXISTS " + usage_partition_list(days);
}

std::string usage_partition_list(const std::vector<std::int32_t>& days) {
  std::string names;
  for (const std::int32_t day : days) {
    if (!names.empty()) names += ", ";
    names += usage_partition_name(day);
  }
  return names;
}

void UsagePartitions::learn(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (auto day = usage_partition_day(name)) known_.insert(*day);
  }
}

std::vector<std::int32_t> UsagePartitions::missing(const std::set<std::int32_t>& days) const {
  std::vector<std::int32_t> out;
  for (const std::int32_t day : days) {
    if (!known_.contains(day)) out.push_back(day);
  }
  return out;
}

std::set<std::int32_t> UsagePartitions::days_ahead(std::int32_t today) const {
  std::set<std::int32_t> days;
  for (std::int32_t d = today - 1; d <= today + static_cast<std::int32_t>(ahead_days_); ++d) days.insert(d);
  return days;
}

std::vector<std::int32_t> UsagePartitions::days_past_retention(std::int32_t today) const {
  std::vector<std::int32_t> out;
  if (retention_days_ == 0) return out;
  const std::int32_t cutoff = today - static_cast<std::int32_t>(retention_days_);
  for (const std::int32_t day : known_) {
    if (day >= cutoff) break;
    out.push_back(day);
  }
  return out;
}

void UsagePartitions::dropped(const std::vector<std::int32_t>& days) {
  for (const std::int32_t day : days) known_.erase(day);
}

}  // namespace keygate::store

#pragma once
// The day partitions of api_key_usage (pure: the arithmetic and the SQL text, no I/O). One
// partition a UTC day, named api_key_usage_pYYYYMMDD. The usage writer keeps yesterday's (late
// events) to partitions_ahead_days after today's, drops those older than retention_days, at
// start and once a UTC day, and creates a batch's days on demand; UsagePartitions is what it
// knows of them on its connection. Day numbers count days since 1970-01-01 (UTC).
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::store {

std::int32_t usage_day_of(std::int64_t unix_us);
std::int32_t usage_today();  // of system_clock::now()
// "2024-01-31" of a day number.
std::string usage_day_text(std::int32_t day);
// "api_key_usage_p20240131"; usage_partition_day() reads it back (nullopt for any other name).
std::string usage_partition_name(std::int32_t day);
std::optional<std::int32_t> usage_partition_day(std::string_view name);
// The UTC day of a COPY text line's created_at (its last field, starting "YYYY-MM-DD"); nullopt
// when malformed.
std::optional<std::int32_t> usage_line_day(std::string_view line);

// Every statement that creates or drops partitions first takes this transaction-level advisory
// lock, so writers of several processes never race on the same partition.
inline constexpr std::int64_t usage_partition_lock_key = 0x6b67757361676531;  // "kgusage1"
// The names of api_key_usage's partitions, one a row.
inline constexpr std::string_view usage_partitions_query =
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'api_key_usage'::regclass";
// The statements that create (IF NOT EXISTS) or drop (IF EXISTS) the partitions of `days`;
// usage_partition_list() names them ("api_key_usage_p20240130, api_key_usage_p20240131").
std::string create_usage_partitions_sql(const std::vector<std::int32_t>& days);
std::string drop_usage_partitions_sql(const std::vector<std::int32_t>& days);
std::string usage_partition_list(const std::vector<std::int32_t>& days);

// What the writer knows of the partitions that exist, and when it maintains them next.
class UsagePartitions {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  UsagePartitions(unsigned ahead_days, unsigned retention_days)
      : ahead_days_(ahead_days), retention_days_(retention_days) {}

  // True when nothing is known: usage_partitions_query must be read first (learn()).
  bool unknown() const { return known_.empty(); }
  // From the partition names usage_partitions_query returned (others are ignored).
  void learn(const std::vector<std::string>& names);
  void forget() { known_.clear(); }  // a new connection, or a row with no partition: look again
  // Of `days`, those with no known partition, oldest first.
  std::vector<std::int32_t> missing(const std::set<std::int32_t>& days) const;
  void created(const std::vector<std::int32_t>& days) { known_.insert(days.begin(), days.end()); }

  // Maintenance: due when `today` was not maintained yet and no retry is pending.
  bool maintenance_due(std::int32_t today, SteadyTime now) const {
    return maintained_day_ != today && now >= next_try_;
  }
  std::set<std::int32_t> days_ahead(std::int32_t today) const;  // yesterday .. today + ahead
  // Known partitions older than retention_days before `today` (none when it is 0), oldest first.
  std::vector<std::int32_t> days_past_retention(std::int32_t today) const;
  void dropped(const std::vector<std::int32_t>& days);
  void maintained(std::int32_t today) { maintained_day_ = today; }
  void postpone_maintenance(SteadyTime now) { next_try_ = now + std::chrono::minutes(1); }
  // A new connection: maintain again at once, from what it reads.
  void reset() {
    known_.clear();
    maintained_day_ = -1;
    next_try_ = {};
  }

 private:
  unsigned ahead_days_;
  unsigned retention_days_;
  std::set<std::int32_t> known_;  // days whose partition exists
  std::int32_t maintained_day_ = -1;
  SteadyTime next_try_{};
};

}  // namespace keygate::store

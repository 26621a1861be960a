// The usage log's day partitions, with no server: UTC day numbers, partition names and the days
// in a line, the SQL that creates and drops partitions, and what UsagePartitions keeps.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "store/usage_partitions.hpp"

using keygate::store::usage_day_of;
using keygate::store::usage_day_text;
using keygate::store::usage_line_day;
using keygate::store::usage_partition_day;
using keygate::store::usage_partition_name;
using keygate::store::UsagePartitions;

namespace {

constexpr std::int64_t us_per_day = 86400LL * 1000000LL;
const std::int32_t feb29 = usage_day_of(1709164800000000LL);  // 2024-02-29 00:00:00 UTC

}  // namespace

TEST_CASE("usage days and partition names are UTC calendar days") {
  CHECK(usage_day_of(0) == 0);
  CHECK(usage_day_of(-1) == -1);
  CHECK(usage_day_of(us_per_day - 1) == 0);
  CHECK(usage_day_of(us_per_day) == 1);
  CHECK(usage_day_of(-us_per_day) == -1);
  CHECK(usage_day_of(-us_per_day - 1) == -2);
  CHECK(usage_partition_name(feb29) == "api_key_usage_p20240229");
  CHECK(usage_day_text(feb29 + 1) == "2024-03-01");
  CHECK(usage_day_text(0) == "1970-01-01");
  CHECK(usage_day_text(-1) == "1969-12-31");
  CHECK(usage_day_text(feb29 - 365) == "2023-03-01");  // 2023 has no 29 February
}

TEST_CASE("a partition name reads back as its day and any other name as none") {
  for (const std::int32_t day : {0, feb29, feb29 + 306, 2932896 /* 9999-12-31 */}) {
    CHECK(usage_partition_day(usage_partition_name(day)) == day);
  }
  CHECK_FALSE(usage_partition_day("api_key_usage_p2024022").has_value());    // short
  CHECK_FALSE(usage_partition_day("api_key_usage_p202402290").has_value());  // long
  CHECK_FALSE(usage_partition_day("api_key_usage_x20240229").has_value());
  CHECK_FALSE(usage_partition_day("api_key_usage_p2024-229").has_value());
  CHECK_FALSE(usage_partition_day("api_key_usage_p20241301").has_value());  // month 13
  CHECK_FALSE(usage_partition_day("api_key_usage_p20240100").has_value());  // day 0
  CHECK_FALSE(usage_partition_day("api_key_usage_p20240132").has_value());
  CHECK_FALSE(usage_partition_day("api_key_usage_default").has_value());
}

TEST_CASE("the day of a COPY line is read from its last field, either timestamp form") {
  CHECK(usage_line_day("a\tb\t2024-02-29T23:59:59.999999Z") == feb29);
  CHECK(usage_line_day("a\t2024-02-29 00:00:00+00") == feb29);
  CHECK(usage_line_day("\t2024-03-01") == feb29 + 1);
  CHECK(usage_line_day("a\t2024-02-31 00:00:00+00") == feb29 + 2);  // counts on into March
  CHECK_FALSE(usage_line_day("no tabs").has_value());
  CHECK_FALSE(usage_line_day("a\t2024-13-01 00:00:00+00").has_value());
  CHECK_FALSE(usage_line_day("a\t2024-00-01").has_value());
  CHECK_FALSE(usage_line_day("a\t2024-01-32").has_value());
  CHECK_FALSE(usage_line_day("a\t2024-1-01").has_value());
  CHECK_FALSE(usage_line_day("a\t2024-01-0").has_value());  // short
  CHECK_FALSE(usage_line_day("a\t2O24-01-01").has_value());  // a letter O
  CHECK_FALSE(usage_line_day("2024-01-01\t").has_value());   // the last field is empty
}

TEST_CASE("partitions are created and dropped under the advisory lock, one statement for all") {
  const std::string lock = "SELECT pg_advisory_xact_lock(" +
                           std::to_string(keygate::store::usage_partition_lock_key) + ");";
  CHECK(keygate::store::create_usage_partitions_sql({}).empty());
  CHECK(keygate::store::drop_usage_partitions_sql({}).empty());
  CHECK(keygate::store::create_usage_partitions_sql({feb29, feb29 + 1}) ==
        lock +
            " CREATE TABLE IF NOT EXISTS api_key_usage_p20240229 PARTITION OF api_key_usage FOR VALUES "
            "FROM ('2024-02-29 00:00:00+00') TO ('2024-03-01 00:00:00+00');"
            " CREATE TABLE IF NOT EXISTS api_key_usage_p20240301 PARTITION OF api_key_usage FOR VALUES "
            "FROM ('2024-03-01 00:00:00+00') TO ('2024-03-02 00:00:00+00');");
  CHECK(keygate::store::drop_usage_partitions_sql({0, 1}) ==
        lock + " DROP TABLE IF EXISTS api_key_usage_p19700101, api_key_usage_p19700102");
  CHECK(keygate::store::usage_partition_list({feb29}) == "api_key_usage_p20240229");
}

TEST_CASE("UsagePartitions knows what it learned and created, and forgets on demand") {
  UsagePartitions partitions(7, 30);
  CHECK(partitions.unknown());
  partitions.learn({"api_key_usage_p20240229", "api_key_usage_default", "other_table"});
  CHECK_FALSE(partitions.unknown());
  CHECK(partitions.missing({feb29 - 1, feb29, feb29 + 1}) == std::vector<std::int32_t>{feb29 - 1, feb29 + 1});
  partitions.created({feb29 + 1});
  CHECK(partitions.missing({feb29 - 1, feb29, feb29 + 1}) == std::vector<std::int32_t>{feb29 - 1});
  partitions.forget();
  CHECK(partitions.unknown());
  CHECK(partitions.missing({feb29}) == std::vector<std::int32_t>{feb29});
}

TEST_CASE("the writer keeps yesterday to `ahead` days after today, and drops what is past retention") {
  const std::int32_t today = feb29;
  UsagePartitions partitions(2, 30);
  CHECK(partitions.days_ahead(today) == std::set<std::int32_t>{today - 1, today, today + 1, today + 2});
  CHECK(UsagePartitions(0, 30).days_ahead(today) == std::set<std::int32_t>{today - 1, today});
  partitions.created({today - 40, today - 31, today - 30, today - 1, today});
  CHECK(partitions.days_past_retention(today) == std::vector<std::int32_t>{today - 40, today - 31});
  partitions.dropped({today - 40, today - 31});
  CHECK(partitions.days_past_retention(today).empty());
  CHECK(partitions.missing({today - 30}).empty());
  UsagePartitions forever(2, 0);  // retention 0: never drop
  forever.created({today - 4000});
  CHECK(forever.days_past_retention(today).empty());
}

TEST_CASE("partition maintenance is due once a UTC day, a minute after a failure, and at once after a reset") {
  using namespace std::chrono;
  const auto t0 = steady_clock::time_point{} + hours(1);
  UsagePartitions partitions(7, 30);
  CHECK(partitions.maintenance_due(feb29, t0));
  partitions.postpone_maintenance(t0);  // it failed
  CHECK_FALSE(partitions.maintenance_due(feb29, t0 + seconds(59)));
  CHECK(partitions.maintenance_due(feb29, t0 + seconds(60)));
  partitions.maintained(feb29);
  CHECK_FALSE(partitions.maintenance_due(feb29, t0 + hours(5)));
  CHECK(partitions.maintenance_due(feb29 + 1, t0 + hours(5)));  // a new day
  partitions.created({feb29});
  partitions.postpone_maintenance(t0 + hours(5));
  partitions.reset();  // a new connection
  CHECK(partitions.unknown());
  CHECK(partitions.maintenance_due(feb29, t0 + hours(5)));
}

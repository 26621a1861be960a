// The usage writer's custom target, with no server: its statements (every name quoted, the UTC
// conversion for a timestamp column), the check of its names, an event as a custom COPY line,
// and telling custom lines from keygate's own in a spill file.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "store/usage_custom.hpp"
#include "store/usage_encoding.hpp"

using keygate::core::IpAddress;
using keygate::store::CustomUsageTarget;
using keygate::store::UsageBatch;
using keygate::store::UsageEvent;
using keygate::store::UsageFacts;

namespace {

CustomUsageTarget seed003() {
  return {"seed003.api_keys", "id", "integer", "last_used_at", "timestamptz", "seed003.api_key_usage"};
}

UsageEvent event(std::string_view key_id, std::string_view endpoint = "/items") {
  UsageFacts f;
  f.key_id = key_id;
  f.method = "GET";
  f.endpoint = endpoint;
  f.user_agent = "curl/8";
  f.client_ip = *IpAddress::parse("192.0.2.1");
  f.status = 201;
  f.duration = std::chrono::microseconds(1500);
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(1709164800001500LL));
  UsageEvent e;
  fill_usage_event(e, f);
  e.sequence = 1;
  return e;
}

}  // namespace

TEST_CASE("custom usage statements quote every name and cast the ids to the id column's type") {
  CHECK(keygate::store::custom_usage_copy_sql(seed003()) ==
        "COPY \"seed003\".\"api_key_usage\" (api_key_id, endpoint, method, status_code, ip_address, "
        "user_agent, response_time_ms, created_at) FROM STDIN");
  CHECK(keygate::store::custom_last_used_sql(seed003()) ==
        "UPDATE \"seed003\".\"api_keys\" AS k SET \"last_used_at\" = v.used_at FROM "
        "unnest($1::integer[], $2::timestamptz[]) AS v(id, used_at) WHERE k.\"id\" = v.id AND "
        "(k.\"last_used_at\" IS NULL OR k.\"last_used_at\" < v.used_at)");
}

TEST_CASE("a custom last-used column without time zone is set to the UTC wall time") {
  const CustomUsageTarget t{"api.user_api_key", "api_key_id", "uuid", "last_used", "timestamp", ""};
  CHECK(keygate::store::custom_last_used_sql(t) ==
        "UPDATE \"api\".\"user_api_key\" AS k SET \"last_used\" = (v.used_at AT TIME ZONE 'UTC') FROM "
        "unnest($1::uuid[], $2::timestamptz[]) AS v(id, used_at) WHERE k.\"api_key_id\" = v.id AND "
        "(k.\"last_used\" IS NULL OR k.\"last_used\" < (v.used_at AT TIME ZONE 'UTC'))");
}

TEST_CASE("a custom usage target with a name or type keygate cannot put in a statement is refused") {
  CHECK(keygate::store::check_custom_usage_target(seed003()).empty());
  auto bad = seed003();
  bad.usage_table = "usage\"; DROP TABLE x; --";
  CHECK_FALSE(keygate::store::check_custom_usage_target(bad).empty());
  bad = seed003();
  bad.id_type = "integer[]); --";
  CHECK_FALSE(keygate::store::check_custom_usage_target(bad).empty());
  bad = seed003();
  bad.last_used_type = "date";
  CHECK_FALSE(keygate::store::check_custom_usage_target(bad).empty());
  bad = seed003();
  bad.last_used_column = "Last Used";
  CHECK_FALSE(keygate::store::check_custom_usage_target(bad).empty());
  // Without a last-used column its type is not looked at; without either, nothing is.
  CHECK(keygate::store::check_custom_usage_target({"api_keys", "id", "", "", "", "api_key_usage"}).empty());
  CHECK(keygate::store::check_custom_usage_target({}).empty());
}

TEST_CASE("an event becomes one custom COPY line: the key id as text, response time in ms, UTC created_at") {
  std::string line;
  REQUIRE(keygate::store::append_custom_usage_line(line, event("42")));
  CHECK(line == "42\t/items\tGET\t201\t192.0.2.1\tcurl/8\t2\t2024-02-29T00:00:00.000000Z\n");
  CHECK(keygate::store::is_custom_usage_line(line.substr(0, line.size() - 1)));
  std::string escaped;
  REQUIRE(keygate::store::append_custom_usage_line(escaped, event("key\\1\t", "/a\tb")));
  CHECK(escaped.starts_with("key\\\\1\\t\t/a\\tb\t"));
  CHECK(keygate::store::is_custom_usage_line(escaped.substr(0, escaped.size() - 1)));
}

TEST_CASE("an event without a key id, or with one longer than the event holds, makes no custom line") {
  std::string line = "x";
  CHECK_FALSE(keygate::store::append_custom_usage_line(line, event("")));
  CHECK_FALSE(keygate::store::append_custom_usage_line(line, event(std::string(65, 'k'))));
  CHECK(line == "x");
  CHECK(keygate::store::append_custom_usage_line(line, event(std::string(64, 'k'))));
  std::size_t invalid = 0;
  const std::vector<UsageEvent> events{event("1"), event(""), event("2")};
  const UsageBatch batch = keygate::store::make_custom_usage_batch(events, invalid);
  CHECK(invalid == 1);
  CHECK(batch.lines() == 2);
  CHECK_FALSE(batch.direct());  // one path: the lines
  CHECK(batch.days.empty());    // no partitions to create
}

TEST_CASE("spill lines of keygate's own format are told apart from custom lines and removed") {
  std::string lines;
  REQUIRE(keygate::store::append_custom_usage_line(lines, event("1")));
  REQUIRE(keygate::store::append_usage_line(lines, event("0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f"), 7));
  REQUIRE(keygate::store::append_custom_usage_line(lines, event("3")));
  lines += "4\t/x\tGET\t200\t10.0.0.1\t\\N\t5\t2024";
  lines += '\0';  // a NUL byte: a line no encoder wrote
  lines += "-01-01\n";
  UsageBatch batch = keygate::store::usage_batch_from_spill(lines, 999);
  REQUIRE(batch.lines() == 4);
  CHECK(keygate::store::keep_custom_usage_lines(batch) == 2);
  REQUIRE(batch.lines() == 2);
  CHECK(batch.data.starts_with("1\t"));
  CHECK(batch.data.substr(batch.line_ends[0]).starts_with("3\t"));
  CHECK(batch.line_ends[1] == batch.data.size());
  CHECK(batch.spill_end == 999);
}

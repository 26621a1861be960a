// The usage log's pure parts: the queue's bound and the COPY line encoding (no servers).
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "store/usage_queue.hpp"
#include "store/usage_writer.hpp"

using keygate::core::IpAddress;
using keygate::store::UsageEvent;
using keygate::store::UsageFacts;
using keygate::store::UsageQueue;

namespace {

constexpr std::string_view key_id = "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f";

UsageFacts facts(std::string_view endpoint = "/a", std::string_view agent = "curl/8") {
  UsageFacts f;
  f.key_id = key_id;
  f.method = "GET";
  f.endpoint = endpoint;
  f.user_agent = agent;
  f.client_ip = *IpAddress::parse("10.1.2.3");
  f.status = 200;
  f.duration = std::chrono::microseconds(1500);
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456LL));
  return f;
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == '\t') out.emplace_back();
    else if (c != '\n') out.back().push_back(c);
  }
  return out;
}

}  // namespace

TEST_CASE("a full usage queue shard drops and counts instead of blocking; close drops the rest") {
  UsageQueue queue(2, 4);  // 2 per shard
  CHECK(queue.record(0, facts()));
  CHECK(queue.record(0, facts()));
  CHECK_FALSE(queue.record(0, facts()));  // shard 0 full
  CHECK(queue.record(1, facts()));
  CHECK(queue.depth() == 3);
  std::vector<UsageEvent> out;
  auto taken = queue.take_all(out);
  CHECK(taken.recorded == 3);
  CHECK(taken.dropped == 1);
  CHECK(out.size() == 3);
  CHECK(queue.record(0, facts()));  // room again after the take
  queue.close();
  CHECK_FALSE(queue.record(1, facts()));
  taken = queue.take_all(out);
  CHECK(taken.recorded == 1);
  CHECK(taken.dropped == 1);
}

TEST_CASE("usage queue: producers on several threads lose nothing below the bound") {
  UsageQueue queue(4, 400000);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) {
    threads.emplace_back([&queue, t] {
      for (int i = 0; i < 20000; ++i) queue.record(t, facts());
    });
  }
  std::vector<UsageEvent> out;
  std::size_t recorded = 0;
  while (recorded < 80000) {
    recorded += queue.take_all(out).recorded;
    std::this_thread::yield();
  }
  for (auto& t : threads) t.join();
  recorded += queue.take_all(out).recorded;
  CHECK(recorded == 80000);
  CHECK(out.size() == 80000);
}

TEST_CASE("a usage event keeps bounded fields and encodes as one COPY line") {
  UsageEvent e;
  std::string long_path(1000, 'p');
  fill_usage_event(e, facts("/" + long_path, "agent\twith\\tab\nand \xff bad \xe2\x82 utf8"));
  CHECK(e.endpoint.size == UsageEvent::max_endpoint);
  CHECK(e.created_at_us == 1700000000123456LL - 1500);
  CHECK(e.response_time_us == 1500);
  e.sequence = 42;
  std::string line;
  REQUIRE(keygate::store::append_usage_line(line, e, 0x0123456789abcdefULL));
  CHECK(line.back() == '\n');
  const auto f = fields(line);
  REQUIRE(f.size() == 9);
  CHECK(f[0] == "01234567-89ab-cdef-0000-00000000002a");
  CHECK(f[1] == key_id);
  CHECK(f[2].size() == UsageEvent::max_endpoint);
  CHECK(f[3] == "GET");
  CHECK(f[4] == "200");
  CHECK(f[5] == "10.1.2.3");
  CHECK(f[6] == "agent\\twith\\\\tab\\nand \xef\xbf\xbd bad \xef\xbf\xbd\xef\xbf\xbd utf8");
  CHECK(f[7] == "1500");
  CHECK(f[8] == "2023-11-14 22:13:20.121956+00");
  CHECK(keygate::store::usage_line_day(line.substr(0, line.size() - 1)) ==
        keygate::store::usage_day_of(e.created_at_us));
}

TEST_CASE("an empty user agent or endpoint is NULL; a key id that is not a uuid is refused") {
  UsageEvent e;
  fill_usage_event(e, facts("", ""));
  std::string line;
  REQUIRE(keygate::store::append_usage_line(line, e, 1));
  const auto f = fields(line);
  CHECK(f[2] == "\\N");
  CHECK(f[6] == "\\N");
  UsageFacts bad = facts();
  bad.key_id = "k1";
  fill_usage_event(e, bad);
  std::string none;
  CHECK_FALSE(keygate::store::append_usage_line(none, e, 1));
  CHECK(none.empty());
}

TEST_CASE("usage days and partition names are UTC calendar days") {
  using keygate::store::usage_day_of;
  CHECK(usage_day_of(0) == 0);
  CHECK(usage_day_of(-1) == -1);
  CHECK(keygate::store::usage_partition_name(usage_day_of(1709164800000000LL)) ==
        "api_key_usage_p20240229");
  CHECK(keygate::store::usage_day_text(usage_day_of(1709164800000000LL) + 1) == "2024-03-01");
  CHECK_FALSE(keygate::store::usage_line_day("no tabs").has_value());
  CHECK_FALSE(keygate::store::usage_line_day("a\t2024-13-01 00:00:00+00").has_value());
}

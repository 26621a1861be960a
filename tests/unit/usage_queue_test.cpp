// The usage log's queue: its bound per shard, close(), and producers on several threads.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "store/usage_queue.hpp"

using keygate::core::IpAddress;
using keygate::store::UsageEvent;
using keygate::store::UsageFacts;
using keygate::store::UsageQueue;

namespace {

constexpr std::string_view key_id = "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f";

UsageFacts facts() {
  UsageFacts f;
  f.key_id = key_id;
  f.method = "GET";
  f.endpoint = "/a";
  f.user_agent = "curl/8";
  f.client_ip = *IpAddress::parse("10.1.2.3");
  f.status = 200;
  f.duration = std::chrono::microseconds(1500);
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456LL));
  return f;
}

}  // namespace

TEST_CASE("a full usage queue shard drops and counts instead of blocking, and a closed queue drops the rest") {
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

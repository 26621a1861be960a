// last_used_at coalescing, with no server and an injected clock: one time a key (its latest
// request), due once an interval, kept until an update succeeds.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "store/usage_last_used.hpp"

using keygate::store::LastUsedTimes;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view key_a = "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f";
constexpr std::string_view key_b = "00000000-0000-4000-8000-000000000001";
const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

std::string time_of(const LastUsedTimes::Rows& rows, std::string_view key) {
  const auto it = std::find(rows.key_ids.begin(), rows.key_ids.end(), key);
  REQUIRE(it != rows.key_ids.end());
  return rows.times[static_cast<std::size_t>(it - rows.key_ids.begin())];
}

}  // namespace

TEST_CASE("last_used_at: one time a key, its latest request, whatever the order seen") {
  LastUsedTimes times(60s);
  times.start(t0);
  times.note(key_a, 1700000000000000LL);
  times.note(key_a, 1700000005000000LL);
  times.note(key_a, 1700000001000000LL);  // older: ignored
  times.note(key_b, 1700000000123456LL);
  CHECK(times.size() == 2);
  const auto rows = times.rows();
  REQUIRE(rows.key_ids.size() == 2);
  REQUIRE(rows.times.size() == 2);
  CHECK(time_of(rows, key_a) == "2023-11-14T22:13:25.000000Z");
  CHECK(time_of(rows, key_b) == "2023-11-14T22:13:20.123456Z");
}

TEST_CASE("last_used_at: a key id that is not a uuid is kept out of the update") {
  LastUsedTimes times(60s);
  times.note("k1", 1);
  times.note(key_a, 2);
  CHECK(times.size() == 2);
  const auto rows = times.rows();
  CHECK(rows.key_ids == std::vector<std::string>{std::string(key_a)});
  CHECK(rows.times.size() == 1);
}

TEST_CASE("last_used_at is due once an interval after the last update, and only with keys seen") {
  LastUsedTimes times(60s);
  times.start(t0);
  CHECK_FALSE(times.due(t0 + 2h));  // nothing seen
  times.note(key_a, 1);
  CHECK_FALSE(times.due(t0 + 59s));
  CHECK(times.due(t0 + 60s));
  CHECK(times.due_at() == t0 + 60s);
  // A failed update sends nothing: the times stay and merge with newer ones.
  times.note(key_a, 5);
  CHECK(times.size() == 1);
  CHECK(times.due(t0 + 61s));
  times.sent(t0 + 61s);
  CHECK(times.empty());
  CHECK(times.due_at() == t0 + 121s);
  times.note(key_b, 9);
  CHECK_FALSE(times.due(t0 + 120s));
  CHECK(times.due(t0 + 121s));
}

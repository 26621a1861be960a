// The usage log's batches, with no server: taking a batch from the backlog, staging it, reading
// one from spill-file lines, the keys it locks, what a refused row leads to, and halving.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "store/usage_batch.hpp"
#include "store/usage_encoding.hpp"
#include "store/usage_partitions.hpp"

using keygate::core::IpAddress;
using keygate::store::UsageBatch;
using keygate::store::UsageEvent;
using keygate::store::UsageFacts;
using keygate::store::UsageRefusalStep;

namespace {

constexpr std::string_view key_a = "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f";
constexpr std::string_view key_b = "00000000-0000-4000-8000-000000000001";
constexpr std::int64_t day_us = 86400LL * 1000000LL;
constexpr std::int64_t feb29_us = 1709164800000000LL;  // 2024-02-29 00:00:00 UTC

UsageEvent event(std::string_view key_id, std::int64_t started_us, std::uint64_t sequence) {
  UsageFacts f;
  f.key_id = key_id;
  f.method = "GET";
  f.endpoint = "/x";
  f.client_ip = *IpAddress::parse("192.0.2.1");
  f.status = 200;
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(started_us));
  UsageEvent e;
  fill_usage_event(e, f);
  e.sequence = sequence;
  return e;
}

// A staged batch of `n` lines, each on its own day from 2024-02-29 on.
UsageBatch staged(std::size_t n) {
  std::string lines;
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(append_usage_line(lines, event(key_a, feb29_us + static_cast<std::int64_t>(i) * day_us, i + 1), 7));
  }
  return keygate::store::usage_batch_from_spill(lines, 1000);
}

std::vector<std::string> lines_of(const UsageBatch& batch) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t end : batch.line_ends) {
    out.push_back(batch.data.substr(at, end - at));
    at = end;
  }
  CHECK(at == batch.data.size());
  return out;
}

}  // namespace

TEST_CASE("a batch from the backlog keeps the events with a uuid key id, in order, and their days") {
  const std::vector<UsageEvent> backlog = {
      event(key_a, feb29_us, 1), event("not-a-uuid", feb29_us, 2), event(key_b, feb29_us + day_us, 3),
      event("", feb29_us, 4), event(key_a, feb29_us + 10, 5)};
  std::size_t invalid = 99;
  const UsageBatch batch = keygate::store::make_usage_batch(backlog, invalid);
  CHECK(invalid == 2);
  CHECK(batch.direct());
  CHECK(batch.lines() == 3);
  REQUIRE(batch.events.size() == 3);
  CHECK(batch.events[0].sequence == 1);
  CHECK(batch.events[1].sequence == 3);
  CHECK(batch.events[2].sequence == 5);
  const std::int32_t feb29 = keygate::store::usage_day_of(feb29_us);
  CHECK(batch.days == std::set<std::int32_t>{feb29, feb29 + 1});
  CHECK_FALSE(batch.from_spill);
}

TEST_CASE("an empty backlog makes an empty batch, which is neither form") {
  std::size_t invalid = 0;
  const UsageBatch batch = keygate::store::make_usage_batch({}, invalid);
  CHECK(batch.lines() == 0);
  CHECK_FALSE(batch.direct());
}

TEST_CASE("staging a direct batch turns its events into the same COPY lines, in order") {
  const std::vector<UsageEvent> backlog = {event(key_a, feb29_us, 1), event(key_b, feb29_us, 2)};
  std::size_t invalid = 0;
  UsageBatch batch = keygate::store::make_usage_batch(backlog, invalid);
  const auto days = batch.days;
  batch.stage(7);
  CHECK_FALSE(batch.direct());
  CHECK(batch.events.empty());
  CHECK(batch.lines() == 2);
  CHECK(batch.days == days);
  std::string expected;
  for (const UsageEvent& e : backlog) REQUIRE(append_usage_line(expected, e, 7));
  CHECK(batch.data == expected);
  CHECK(lines_of(batch).size() == 2);
}

TEST_CASE("a batch from spill-file lines knows each line's end and its days (a bad timestamp adds none)") {
  std::string lines;
  REQUIRE(append_usage_line(lines, event(key_a, feb29_us, 1), 7));
  lines += "x\ty\tnot-a-time\n";
  REQUIRE(append_usage_line(lines, event(key_a, feb29_us + 3 * day_us, 2), 7));
  const UsageBatch batch = keygate::store::usage_batch_from_spill(lines, 4242);
  CHECK(batch.from_spill);
  CHECK(batch.spill_end == 4242);
  CHECK_FALSE(batch.direct());
  CHECK(batch.lines() == 3);
  CHECK(lines_of(batch)[1] == "x\ty\tnot-a-time\n");
  const std::int32_t feb29 = keygate::store::usage_day_of(feb29_us);
  CHECK(batch.days == std::set<std::int32_t>{feb29, feb29 + 3});
  CHECK(keygate::store::usage_batch_from_spill("", 0).lines() == 0);
}

TEST_CASE("a batch locks each of its keys once, in lower case, in the order first seen") {
  UsageBatch batch;
  batch.events = {event("0B6F8C1E-2A47-4D1C-9F3E-5A6B7C8D9E0F", 0, 1), event(key_b, 0, 2),
                  event(key_a, 0, 3), event(key_b, 0, 4)};
  CHECK(keygate::store::usage_batch_key_ids(batch) == std::vector<std::string>{std::string(key_a), std::string(key_b)});
}

TEST_CASE("SQLSTATE: data and integrity errors are the rows' fault, a missing partition is not") {
  using keygate::store::is_missing_partition;
  using keygate::store::is_usage_row_error;
  CHECK(is_usage_row_error("22021"));  // invalid byte sequence
  CHECK(is_usage_row_error("22P02"));  // invalid text representation
  CHECK(is_usage_row_error("23505"));  // unique violation
  CHECK_FALSE(is_usage_row_error("23514"));
  CHECK(is_missing_partition("23514"));
  CHECK_FALSE(is_missing_partition("23505"));
  CHECK_FALSE(is_usage_row_error("42P01"));  // undefined table
  CHECK_FALSE(is_usage_row_error("57014"));  // cancelled
  CHECK_FALSE(is_usage_row_error(""));
  CHECK_FALSE(is_usage_row_error("2200"));
}

TEST_CASE("a refused staged batch goes once more as it is, then is halved down to the one line dropped") {
  UsageBatch batch = staged(3);
  CHECK(next_refusal_step(batch) == UsageRefusalStep::retry_as_is);
  CHECK(next_refusal_step(batch) == UsageRefusalStep::halve);
  auto [first, second] = keygate::store::halve_usage_batch(batch);
  CHECK(first.lines() == 1);
  CHECK(second.lines() == 2);
  // A half was refused once already: the next refusal halves it again, or drops its one line.
  CHECK(next_refusal_step(first) == UsageRefusalStep::drop_line);
  CHECK(next_refusal_step(second) == UsageRefusalStep::halve);
  UsageBatch one = staged(1);
  CHECK(next_refusal_step(one) == UsageRefusalStep::retry_as_is);
  CHECK(next_refusal_step(one) == UsageRefusalStep::drop_line);
}

TEST_CASE("halving a batch keeps every line once and in order, and only the second half consumes the spill file") {
  const UsageBatch batch = staged(5);
  const auto [first, second] = keygate::store::halve_usage_batch(batch);
  CHECK(first.lines() == 2);
  CHECK(second.lines() == 3);
  CHECK(first.data + second.data == batch.data);
  std::vector<std::string> both = lines_of(first);
  for (const std::string& line : lines_of(second)) both.push_back(line);
  CHECK(both == lines_of(batch));
  CHECK(first.days == batch.days);
  CHECK(second.days == batch.days);
  CHECK(first.from_spill);
  CHECK(second.from_spill);
  CHECK(first.spill_end == 0);
  CHECK(second.spill_end == 1000);
  CHECK(first.query_failures == 1);
  CHECK(second.query_failures == 1);
}

#pragma once
// A batch of the usage log: the events one transaction writes into api_key_usage, and the
// arithmetic of batches (pure, no I/O). UsageConnection writes a batch; UsageWriter takes them
// from its backlog or the spill file and decides what follows a failure.
//
// A batch has one of two forms. A batch from memory that was never sent holds its events, sent
// with one binary COPY straight into api_key_usage (the direct path). Once that could have
// written anything (a COMMIT sent and no answer), once PostgreSQL refused one of its rows, and
// for every batch read from the spill file, it holds COPY text lines instead, for the staging
// table and ON CONFLICT DO NOTHING (the staged path): a second write of a row is then a no-op.
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/usage_event.hpp"

namespace keygate::store {

struct UsageBatch {
  std::vector<UsageEvent> events;      // direct batch: the events (key ids checked), in order
  std::string data;                    // staged batch: COPY text lines
  std::vector<std::size_t> line_ends;  // staged batch: offset just past each line's '\n'
  std::set<std::int32_t> days;         // UTC days of the events' created_at
  bool from_spill = false;
  std::uint64_t spill_end = 0;  // from_spill and nonzero: consumed() up to here once stored
  int query_failures = 0;       // staged batch: times PostgreSQL refused its rows

  bool direct() const { return !events.empty(); }
  std::size_t lines() const { return events.size() + line_ends.size(); }
  // Turns a direct batch into a staged one (the same events, as COPY text lines).
  void stage(std::uint64_t process_id);
};

// A direct batch of the events whose key id is a uuid; `invalid` counts the others (dropped).
UsageBatch make_usage_batch(std::span<const UsageEvent> events, std::size_t& invalid);
// A staged batch of complete COPY text lines read from the spill file, to be marked consumed
// up to `spill_end` once stored. A line whose created_at cannot be read adds no day.
UsageBatch usage_batch_from_spill(std::string lines, std::uint64_t spill_end);

// The distinct key ids of a direct batch, in lower case (as PostgreSQL prints a uuid), in the
// order first seen: what the batch locks FOR KEY SHARE.
std::vector<std::string> usage_batch_key_ids(const UsageBatch& batch);

// SQLSTATE classes of a refused batch. A row error (class 22 data exception or 23 integrity
// constraint) is about rows in the batch; a missing partition (23514) is not, nor is anything
// else (schema missing, resources, cancelled): those keep the rows and retry.
bool is_usage_row_error(std::string_view sqlstate);
bool is_missing_partition(std::string_view sqlstate);

// What follows when PostgreSQL refused a row of a staged batch: once more as it is (another
// writer's key deleted meanwhile clears up by itself), then halves until the bad line stands
// alone, and drops only that one. Counts the refusal in batch.query_failures.
enum class UsageRefusalStep { retry_as_is, drop_line, halve };
UsageRefusalStep next_refusal_step(UsageBatch& batch);
// The two halves of a staged batch of two lines or more, first half first. The second keeps
// spill_end (the file is consumed once the last piece is stored); both count as refused once.
std::pair<UsageBatch, UsageBatch> halve_usage_batch(const UsageBatch& batch);

}  // namespace keygate::store

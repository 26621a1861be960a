#pragma once
// The usage writer's custom target (store.schema: custom), pure, no I/O: the operator's usage
// table in seed 003's layout and the last-used column of its key table. UsageConnection runs
// these statements; UsageWriter takes the batches.
//
// One path for every batch: BEGIN; COPY "usage_table" (custom_usage_columns) FROM STDIN; COMMIT,
// in COPY text (the key id as text, so any id type works). The operator's table has no event
// id, so a row written twice cannot be recognised; keygate's rule is to drop no usage event it
// accepted, so the writer is at-least-once there:
//   - a batch whose COMMIT was sent without an answer (the connection broke or timed out) is
//     written again, and its rows are counted as possibly duplicated (metric and log line);
//   - the spill file keeps its replay position across restarts (UsageSpill punches out what
//     was replayed), so a restart replays again at most the batch that was in flight;
//   - a row PostgreSQL refuses (SQLSTATE class 22 or 23: a value too long for its column, a
//     key gone under a foreign key) is isolated as on keygate's staging path (once more as it
//     is, then halves) and dropped alone, counted as refused and dropped.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "store/usage_batch.hpp"
#include "store/usage_event.hpp"
#include "store/usage_writer_options.hpp"

namespace keygate::store {

// Empty when the writer can put the target's names and types in a statement (plain
// identifiers, a known id type, timestamptz or timestamp), else one line naming the field.
std::string check_custom_usage_target(const CustomUsageTarget& target);

// `"table"` or `"schema"."table"`, of a name check_custom_usage_target() accepted.
std::string quoted_custom_table(std::string_view table);

// COPY "usage_table" (custom_usage_columns) FROM STDIN: text format.
std::string custom_usage_copy_sql(const CustomUsageTarget& target);
// UPDATE of last_used_column from $1 (ids, as id_type[]) and $2 (times, timestamptz[]) where it
// is older or NULL; a timestamp column gets the UTC wall time.
std::string custom_last_used_sql(const CustomUsageTarget& target);

// A batch of the events' custom lines (in the staged form: it has no direct one). `invalid`
// counts the events without a key id (dropped).
UsageBatch make_custom_usage_batch(std::span<const UsageEvent> events, std::size_t& invalid);

// A line (without its '\n') the custom encoder writes: custom_usage_fields fields, no NUL byte.
// A line of keygate's own format (9 fields: a spill file from store.schema: keygate) is not.
bool is_custom_usage_line(std::string_view line);
// Removes the lines that are not custom lines from a batch read from the spill file, keeping
// its spill_end; returns how many it removed.
std::size_t keep_custom_usage_lines(UsageBatch& batch);

}  // namespace keygate::store

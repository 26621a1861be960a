#pragma once
// What the usage writer is told (issue #5): where PostgreSQL is, how long its statements may
// take, the batching and the in-memory bound, the spill file, last_used_at's interval, the day
// partitions' horizon, and the backoff while PostgreSQL is away. The writer (usage_writer.hpp)
// and its connection (usage_connection.hpp) read it. With `custom` set, it writes to the
// operator's own tables instead of keygate's (store.schema: custom; usage_custom.hpp).
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace keygate::store {

// The operator's tables the writer fills in custom mode, from store::ResolvedSchema. Names are
// plain identifiers (table names "table" or "schema.table"); the writer refuses others.
struct CustomUsageTarget {
  std::string key_table;         // CustomSchema::table
  std::string id_column;         // CustomSchema::id_column
  std::string id_type;           // ResolvedSchema::id_type: "uuid", "integer", "bigint", "text", ...
  std::string last_used_column;  // empty: no last-used update
  std::string last_used_type;    // "timestamptz" or "timestamp" (read and written as UTC)
  std::string usage_table;       // seed 003's api_key_usage layout; empty: no usage rows
};

struct UsageWriterOptions {
  std::string dsn;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{5000};  // each statement of a batch
  std::size_t batch_size = 5000;
  std::chrono::milliseconds flush_interval{1000};
  std::size_t queue_size = 100000;  // events the writer holds in memory; past it: spill file
  std::string spill_path;           // empty: no spill file (past the bound, events are dropped)
  std::chrono::milliseconds last_used_interval{60000};
  unsigned retention_days = 30;        // partitions older than this many days are dropped; 0: never
  unsigned partitions_ahead_days = 7;  // partitions created ahead of today (UTC days)
  std::chrono::milliseconds retry_min{100};  // backoff while PostgreSQL is away
  std::chrono::milliseconds retry_max{2000};
  // Set: the operator's tables, not keygate's (no partitions, no api_keys / api_key_usage
  // statement at all, and the retention and partition options above unused).
  std::optional<CustomUsageTarget> custom;
};

}  // namespace keygate::store

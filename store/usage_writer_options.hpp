#pragma once
// What the usage writer is told (issue #5): where PostgreSQL is, how long its statements may
// take, the batching and the in-memory bound, the spill file, last_used_at's interval, the day
// partitions' horizon, and the backoff while PostgreSQL is away. The writer (usage_writer.hpp)
// and its connection (usage_connection.hpp) read it.
#include <chrono>
#include <cstddef>
#include <string>

namespace keygate::store {

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
};

}  // namespace keygate::store

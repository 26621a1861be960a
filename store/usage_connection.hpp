#pragma once
// The usage writer's own PostgreSQL session (never the request path's pool) and the SQL of the
// usage log: connecting and the session's temp staging table, keeping the day partitions, the
// two ways of writing a batch, and the last_used_at update.
//
// A batch never sent before goes the direct way, in one transaction:
//   BEGIN; SELECT .. FOR KEY SHARE (its keys); COPY api_key_usage FROM STDIN (FORMAT binary); COMMIT
// A batch whose outcome is unknown (COMMIT sent, then the connection broke or timed out: the
// commit may have landed), one with a row PostgreSQL refuses, and every batch replayed from
// the spill file go the careful way:
//   BEGIN; COPY keygate_usage_staging FROM STDIN; SELECT .. FOR KEY SHARE (its keys);
//   INSERT INTO api_key_usage SELECT ... ON CONFLICT DO NOTHING; COMMIT
// so it adds no row twice: every event's id is, with created_at, the table's primary key.
// Migration 0004 replaced api_key_usage's foreign key by these per-batch locks and a cascading
// delete trigger (write_direct in usage_connection.cpp says why that holds).
//
// With options.custom set it writes the operator's tables instead (usage_custom.hpp): no
// staging table, no partitions, one path for every batch (BEGIN; COPY "usage_table" FROM STDIN;
// COMMIT), and the last-used UPDATE of its key table.
//
// A failure is logged once until the next success. One operation at a time, on the writer's
// thread; results as values, the decisions about a batch's future are UsageWriter's.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "store/pg_connection.hpp"
#include "store/usage_batch.hpp"
#include "store/usage_last_used.hpp"
#include "store/usage_partitions.hpp"
#include "store/usage_writer_options.hpp"

namespace keygate::store {

class UsageConnection {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  // `options` must outlive the connection.
  UsageConnection(const UsageWriterOptions& options, std::uint64_t process_id);
  ~UsageConnection();
  UsageConnection(const UsageConnection&) = delete;
  UsageConnection& operator=(const UsageConnection&) = delete;

  // Connects (and creates the staging table) when not connected, then maintains the day
  // partitions when due (a failure there is retried a minute later, the batches go on). False
  // when PostgreSQL cannot be used now: keep the events and try again after a backoff.
  boost::asio::awaitable<bool> ensure_ready(SteadyTime deadline);
  bool connected() const;
  bool maintenance_due(SteadyTime now) const;
  void close();

  struct Written {
    enum class Outcome {
      stored,     // committed: `rows` rows added (rows of keys that are gone are left out)
      retry,      // nothing lost, nothing known to be committed: the same batch again later
      restaged,   // a direct batch had a row PostgreSQL refuses: now staged, write it again now
      refused,    // a staged batch had a row PostgreSQL refuses (`error`): see UsageRefusalStep
    };
    Outcome outcome = Outcome::retry;
    std::uint64_t rows = 0;
    std::string error;
    // retry of a custom batch whose COMMIT was sent without an answer: it may be stored, and
    // the retry may write its rows twice (a native batch is staged instead: no duplicate).
    bool commit_unknown = false;
  };
  // Writes `batch` in one transaction (after ensure_ready), the direct or the staged way. A
  // direct batch whose outcome becomes unknown is staged before it is retried.
  boost::asio::awaitable<Written> write(UsageBatch& batch, SteadyTime deadline);

  // Sets last_used_at (custom: the last-used column) of the keys in `rows` where it is older.
  enum class LastUsedOutcome {
    updated,
    failed,   // not set (logged): keep the times and send them again
    refused,  // custom only: PostgreSQL refuses these values (class 22/23): sending them again
              // cannot help (logged)
  };
  boost::asio::awaitable<LastUsedOutcome> update_last_used(const LastUsedTimes::Rows& rows,
                                                           SteadyTime deadline);

 private:
  boost::asio::awaitable<bool> connect(SteadyTime deadline);
  boost::asio::awaitable<bool> maintain_partitions(SteadyTime deadline);
  boost::asio::awaitable<bool> ensure_partitions(const std::set<std::int32_t>& days, SteadyTime deadline);
  boost::asio::awaitable<Written> write_direct(UsageBatch& batch, SteadyTime deadline);
  boost::asio::awaitable<Written> write_staged(UsageBatch& batch, SteadyTime deadline);
  boost::asio::awaitable<Written> write_custom(UsageBatch& batch, SteadyTime deadline);
  Written stored(std::uint64_t rows);
  Written failed(const PgResult& result);
  std::chrono::milliseconds time_left(SteadyTime deadline) const;  // for one statement
  void note_failure(const std::string& what);
  void drop();

  const UsageWriterOptions& options_;
  const CustomUsageTarget* custom_;  // options_.custom, or null: keygate's own tables
  std::uint64_t process_id_;
  std::unique_ptr<PgConnection> pg_;
  UsagePartitions partitions_;
  std::string last_failure_;  // logged once until the next success
};

}  // namespace keygate::store

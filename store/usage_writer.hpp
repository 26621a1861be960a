#pragma once
// The usage log's writer (issue #5): one per process, on a thread of its own with its own
// io_context and its own PostgreSQL connection (never the request path's pool). It empties the
// UsageQueue's shards every few milliseconds into a backlog, and writes the backlog in batches
// (batch_size events, or whatever is there every flush_interval). A batch never sent before
// goes in one transaction: its keys locked once each (SELECT .. FOR KEY SHARE; rows of keys
// that are gone are left out), then one `COPY api_key_usage (...) FROM STDIN (FORMAT binary)`.
// A batch whose outcome is unknown, and every batch replayed from the spill file, goes the
// careful way (a staging table and ON CONFLICT DO NOTHING), so it adds no row twice: every
// event carries an id (process id + sequence) that is, with created_at, the table's primary
// key. With the direct COPY, a usage row costs PostgreSQL about a third of what it did
// (bench/usage_rows measures it).
//
// While PostgreSQL is away the writer keeps the events and retries with backoff; past
// queue_size events in memory it appends the oldest to the spill file (UsageSpill), which it
// replays when PostgreSQL answers again, also after a restart. last_used_at is set for every
// key seen, at most once per last_used_interval, in one statement. It keeps the day partitions
// of api_key_usage: created ahead, and dropped past retention_days, at start and every day.
//
// With options.custom (store.schema: custom) the same loop writes the operator's tables
// instead: usage_custom.hpp says how, and why it is at-least-once there.
//
// Why a thread of its own rather than worker 0's io_context: encoding batches, COPY traffic
// and the spill file's blocking disk writes never delay a request, and the writer keeps running
// (draining) after the server's io_contexts have stopped.
//
// The pieces: usage_batch.hpp (a batch's two forms and their arithmetic), usage_encoding.hpp
// (an event as a COPY row), usage_connection.hpp (the SQL: connecting, batches, last_used_at),
// usage_partitions.hpp (the day partitions), usage_last_used.hpp (last_used_at coalescing),
// usage_spill.hpp (the spill file). This class is the loop that drives them: collecting,
// batching, flushing, backoff, spilling and the drain at shutdown.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/usage_batch.hpp"
#include "store/usage_connection.hpp"
#include "store/usage_event.hpp"
#include "store/usage_last_used.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_spill.hpp"
#include "store/usage_writer_options.hpp"

namespace keygate::store {

// What stop_and_drain() did with the events it found.
struct UsageDrainResult {
  std::size_t written = 0;  // rows written during the drain
  std::size_t spilled = 0;  // events appended to the spill file (PostgreSQL away or too slow)
  std::size_t dropped = 0;  // events lost (no spill file, or it failed)
  bool complete() const { return dropped == 0; }
};

class UsageWriter {
 public:
  // Registers its wake-up with `queue`: construct it before any worker records.
  UsageWriter(UsageWriterOptions options, UsageQueue& queue);
  // Drains with no time left (spills what is queued) if stop_and_drain() was not called.
  ~UsageWriter();
  UsageWriter(const UsageWriter&) = delete;
  UsageWriter& operator=(const UsageWriter&) = delete;

  // Opens the spill file and starts the writer thread. A spill file that cannot be opened is
  // logged and leaves the writer without one (events past the bound are then dropped).
  void start();

  // Blocking, from any thread but the writer's, after the producers stopped (server.run()
  // returned): closes the queue, writes what is left within `timeout`, appends the rest to
  // the spill file, and joins the thread. Idempotent.
  UsageDrainResult stop_and_drain(std::chrono::milliseconds timeout);

  std::uint64_t process_id() const { return process_id_; }

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  enum class WriteOutcome { stored, split, retry };

  boost::asio::awaitable<void> collect_loop();
  boost::asio::awaitable<void> flush_loop();
  boost::asio::awaitable<void> drain();
  boost::asio::awaitable<WriteOutcome> write_front(SteadyTime deadline);
  boost::asio::awaitable<void> flush_last_used(SteadyTime deadline);
  boost::asio::awaitable<void> sleep_until(SteadyTime when);
  boost::asio::awaitable<void> back_off(std::chrono::milliseconds& pause);

  void collect();
  void spill_overflow();
  void spill_leftovers();
  UsageBatch take_batch();
  bool append_line(std::string& out, const UsageEvent& event) const;  // for the spill file
  std::optional<UsageBatch> read_spill_batch();
  void consume_spill(const UsageBatch& batch);
  WriteOutcome handle_refusal(const std::string& error);
  std::size_t backlog_size() const { return backlog_.size() - backlog_head_; }
  bool writes_rows() const { return !options_.custom || !options_.custom->usage_table.empty(); }
  bool writes_last_used() const { return !options_.custom || !options_.custom->last_used_column.empty(); }
  void compact_backlog();
  void update_depth();

  UsageWriterOptions options_;
  UsageQueue& queue_;
  boost::asio::io_context io_;
  boost::asio::steady_timer collect_timer_;
  boost::asio::steady_timer flush_timer_;
  std::thread thread_;
  std::atomic<bool> wake_posted_{false};
  bool started_ = false;
  bool stopped_ = false;

  std::uint64_t process_id_;
  std::uint64_t next_sequence_ = 1;
  std::vector<UsageEvent> backlog_;  // events from backlog_head_ on are waiting
  std::size_t backlog_head_ = 0;
  std::deque<UsageBatch> in_flight_;  // batches being written, front first
  UsageSpill spill_;
  LastUsedTimes last_used_;
  UsageConnection connection_;
  std::chrono::milliseconds backoff_{0};

  bool stopping_ = false;
  SteadyTime drain_deadline_{};
  UsageDrainResult drain_result_;
};

}  // namespace keygate::store

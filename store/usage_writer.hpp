#pragma once
// The usage log's writer (issue #5): one per process, on a thread of its own with its own
// io_context and its own PostgreSQL connection (never the request path's pool). It empties the
// UsageQueue's shards every few milliseconds into a backlog, and writes the backlog in batches
// (batch_size events, or whatever is there every flush_interval). A batch never sent before
// goes in one transaction: its keys locked once each (SELECT .. FOR KEY SHARE; rows of keys
// that are gone are left out), then one `COPY api_key_usage (...) FROM STDIN (FORMAT binary)`.
// A batch whose outcome is unknown (COMMIT sent, then the connection broke or timed out: the
// commit may have landed), and every batch replayed from the spill file, goes the careful way:
//   BEGIN; COPY keygate_usage_staging FROM STDIN; SELECT .. FOR KEY SHARE (its keys);
//   INSERT INTO api_key_usage SELECT ... ON CONFLICT DO NOTHING; COMMIT
// so it adds no row twice: every event carries an id (process id + sequence) that is, with
// created_at, the table's primary key. Migration 0004 replaced api_key_usage's foreign key by
// these per-batch locks and a cascading delete trigger: with the direct COPY, a usage row costs
// PostgreSQL about a third of what it did (bench/usage_rows measures it).
//
// While PostgreSQL is away the writer keeps the events and retries with backoff; past
// queue_size events in memory it appends the oldest to the spill file (UsageSpill), which it
// replays when PostgreSQL answers again, also after a restart. last_used_at is set for every
// key seen, at most once per last_used_interval, in one statement. It keeps the day partitions
// of api_key_usage: created ahead, and dropped past retention_days, at start and every day.
//
// Why a thread of its own rather than worker 0's io_context: encoding batches, COPY traffic
// and the spill file's blocking disk writes never delay a request, and the writer keeps running
// (draining) after the server's io_contexts have stopped.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/pg_connection.hpp"
#include "store/usage_event.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_spill.hpp"

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
  struct Batch;
  enum class WriteOutcome { stored, split, retry };

  boost::asio::awaitable<void> collect_loop();
  boost::asio::awaitable<void> flush_loop();
  boost::asio::awaitable<void> drain();
  boost::asio::awaitable<bool> ensure_ready(std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<bool> maintain_partitions(std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<bool> ensure_partitions(const std::set<std::int32_t>& days,
                                                 std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<WriteOutcome> write_front(std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<bool> flush_last_used(std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point when);

  void collect();
  void spill_overflow();
  Batch take_batch();
  std::optional<Batch> read_spill_batch();
  std::size_t backlog_size() const { return backlog_.size() - backlog_head_; }
  void compact_backlog();
  void update_depth();
  void note_failure(const std::string& what);
  void note_success();
  void drop_connection();
  std::chrono::milliseconds remaining(std::chrono::steady_clock::time_point deadline,
                                      std::chrono::milliseconds cap) const;

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
  std::deque<Batch> in_flight_;      // encoded batches being written, front first
  UsageSpill spill_;
  struct TextHash {  // lets last_used_ be searched by string_view, with no string made
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  // key id -> latest request (us)
  std::unordered_map<std::string, std::int64_t, TextHash, std::equal_to<>> last_used_;
  std::chrono::steady_clock::time_point last_used_flushed_;

  std::unique_ptr<PgConnection> connection_;
  std::set<std::int32_t> known_days_;   // partitions known to exist (UTC day numbers)
  std::int32_t maintained_day_ = -1;    // UTC day of the last partition maintenance
  std::chrono::steady_clock::time_point next_maintenance_try_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_failure_;  // logged once until the next success

  bool stopping_ = false;
  std::chrono::steady_clock::time_point drain_deadline_{};
  UsageDrainResult drain_result_;
};

// ---- the encoding, shared with the spill file (exposed for tests) ---------------------------

// A random 64-bit id for this process's events (never 0).
std::uint64_t new_usage_process_id();
// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" of (process id, sequence).
std::string usage_event_id(std::uint64_t process_id, std::uint64_t sequence);
// Appends one COPY text line (with '\n') for the staging table's columns: event_id,
// api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_us,
// created_at. False (nothing appended) when the event's key id is not a uuid.
bool append_usage_line(std::string& out, const UsageEvent& event, std::uint64_t process_id);
// The binary COPY form of the same event, for the columns event_id, api_key_id, endpoint,
// method, status_code, ip_address, user_agent, response_time_ms, response_time_us, created_at
// (what a direct batch sends): the same values as the text line, with response_time_ms
// rounded from response_time_us. False (nothing appended) when the key id is not a uuid. A
// COPY's data is the header, the rows, then the trailer.
bool append_usage_binary_row(std::string& out, const UsageEvent& event, std::uint64_t process_id);
void append_usage_binary_header(std::string& out);
void append_usage_binary_trailer(std::string& out);
// The UTC day (days since 1970-01-01) of a line's created_at; nullopt when malformed.
std::optional<std::int32_t> usage_line_day(std::string_view line);
std::int32_t usage_day_of(std::int64_t unix_us);
// "2024-01-31 12:34:56.789012+00"
void append_utc_timestamp(std::string& out, std::int64_t unix_us);
// "api_key_usage_p20240131" for a UTC day number; "2024-01-31" for the same.
std::string usage_partition_name(std::int32_t day);
std::string usage_day_text(std::int32_t day);

}  // namespace keygate::store

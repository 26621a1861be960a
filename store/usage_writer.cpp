#include "store/usage_writer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <span>

#include "core/log.hpp"
#include "store/metrics.hpp"
#include "store/usage_custom.hpp"
#include "store/usage_encoding.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::size_t spill_read_max_bytes = 8 * 1024 * 1024;

UsageWriterOptions checked(UsageWriterOptions options) {
  if (options.custom) {
    // The names reach statements (quoted): a startup error, never SQL from an odd option.
    if (std::string error = check_custom_usage_target(*options.custom); !error.empty()) {
      throw std::invalid_argument(error);
    }
  }
  return options;
}

}  // namespace

UsageWriter::UsageWriter(UsageWriterOptions options, UsageQueue& queue)
    : options_(checked(std::move(options))),
      queue_(queue),
      collect_timer_(io_),
      flush_timer_(io_),
      process_id_(new_usage_process_id()),
      spill_(options_.spill_path, options_.custom ? UsageSpill::ReplayPosition::in_file
                                                  : UsageSpill::ReplayPosition::in_memory),
      last_used_(options_.last_used_interval,
                 options_.custom ? LastUsedTimes::KeyIds::any : LastUsedTimes::KeyIds::uuid),
      connection_(options_, process_id_) {
  options_.batch_size = std::max<std::size_t>(1, options_.batch_size);
  options_.queue_size = std::max<std::size_t>(1, options_.queue_size);
  backoff_ = options_.retry_min;
  // A shard at a batch's share wakes the collector at once instead of at its next tick.
  queue_.set_wake(
      [this] {
        if (wake_posted_.exchange(true, std::memory_order_acq_rel)) return;
        asio::post(io_, [this] {
          wake_posted_.store(false, std::memory_order_release);
          collect_timer_.cancel();
        });
      },
      std::max<std::size_t>(1, options_.batch_size / queue_.shards()));
}

UsageWriter::~UsageWriter() {
  if (started_ && !stopped_) stop_and_drain(milliseconds(0));
  queue_.set_wake({}, 0);
}

void UsageWriter::start() {
  if (started_) return;
  started_ = true;
  if (!options_.spill_path.empty() && writes_rows()) {
    if (std::string error = spill_.open(); !error.empty()) {
      core::log_error("usage: no spill file; events past the in-memory bound will be dropped",
                      {{"detail", error}});
    } else if (spill_.torn_bytes() > 0) {
      core::log_warn("usage: cut a torn last line from the spill file", {{"detail", spill_.path()}});
    }
  }
  last_used_.start(SteadyClock::now());
  auto rethrow = [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // a bug: let it end the process loudly
  };
  asio::co_spawn(io_, collect_loop(), rethrow);
  asio::co_spawn(io_, flush_loop(), rethrow);
  thread_ = std::thread([this] { io_.run(); });
}

UsageDrainResult UsageWriter::stop_and_drain(milliseconds timeout) {
  if (stopped_) return drain_result_;
  if (!started_) start();
  stopped_ = true;
  const SteadyTime deadline = SteadyClock::now() + timeout;
  asio::post(io_, [this, deadline] {
    stopping_ = true;
    drain_deadline_ = deadline;
    collect_timer_.cancel();
    flush_timer_.cancel();
  });
  if (thread_.joinable()) thread_.join();
  return drain_result_;
}

asio::awaitable<void> UsageWriter::sleep_until(SteadyTime when) {
  flush_timer_.expires_at(when);
  co_await flush_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> UsageWriter::back_off(milliseconds& pause) {
  co_await sleep_until(SteadyClock::now() + pause);
  pause = std::min(pause * 2, options_.retry_max);
}

// ---- collecting: the queue's shards into the backlog ----------------------------------------

asio::awaitable<void> UsageWriter::collect_loop() {
  const milliseconds tick = std::clamp(options_.flush_interval / 4, milliseconds(5), milliseconds(100));
  while (!stopping_) {
    collect();
    collect_timer_.expires_after(tick);
    co_await collect_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void UsageWriter::collect() {
  const std::size_t before = backlog_.size();
  const UsageQueue::Taken taken = queue_.take_all(backlog_);
  Metrics& m = metrics();
  if (taken.recorded > 0) m.usage_queued.fetch_add(taken.recorded, std::memory_order_relaxed);
  if (taken.dropped > 0) m.usage_dropped.fetch_add(taken.dropped, std::memory_order_relaxed);
  for (std::size_t i = before; i < backlog_.size(); ++i) {
    UsageEvent& e = backlog_[i];
    e.sequence = next_sequence_++;
    if (writes_last_used()) last_used_.note(e.key_id.view(), e.created_at_us);
  }
  if (!writes_rows()) {  // a custom target without a usage table: last-used times only
    backlog_.clear();
    backlog_head_ = 0;
  }
  if (backlog_size() > options_.queue_size) spill_overflow();
  update_depth();
  if (backlog_size() >= options_.batch_size) flush_timer_.cancel();
}

void UsageWriter::compact_backlog() {
  if (backlog_head_ == backlog_.size()) {
    backlog_.clear();
    backlog_head_ = 0;
  } else if (backlog_head_ > 4096 && backlog_head_ * 2 > backlog_.size()) {
    backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<std::ptrdiff_t>(backlog_head_));
    backlog_head_ = 0;
  }
}

void UsageWriter::update_depth() {
  std::size_t flying = 0;
  for (const UsageBatch& b : in_flight_) flying += b.from_spill ? 0 : b.lines();
  metrics().usage_queue_depth.store(static_cast<std::int64_t>(backlog_size() + flying),
                                    std::memory_order_relaxed);
}

UsageBatch UsageWriter::take_batch() {
  const std::size_t n = std::min(options_.batch_size, backlog_size());
  std::size_t invalid = 0;
  const auto events = std::span(backlog_).subspan(backlog_head_, n);
  UsageBatch batch =
      options_.custom ? make_custom_usage_batch(events, invalid) : make_usage_batch(events, invalid);
  backlog_head_ += n;
  compact_backlog();
  if (invalid > 0) {
    metrics().usage_dropped.fetch_add(invalid, std::memory_order_relaxed);
    core::log_error(options_.custom ? "usage: events with no key id (or one too long to hold) were dropped"
                                    : "usage: events with a key id that is not a uuid were dropped",
                    {{"detail", std::to_string(invalid)}});
  }
  return batch;
}

// ---- the spill file -------------------------------------------------------------------------

bool UsageWriter::append_line(std::string& out, const UsageEvent& event) const {
  return options_.custom ? append_custom_usage_line(out, event) : append_usage_line(out, event, process_id_);
}

void UsageWriter::spill_overflow() {
  const std::size_t n = backlog_size() - options_.queue_size;
  std::string lines;
  std::size_t encoded = 0, invalid = 0;
  for (std::size_t i = backlog_head_; i < backlog_head_ + n; ++i) {
    if (append_line(lines, backlog_[i])) ++encoded;
    else ++invalid;
  }
  backlog_head_ += n;
  compact_backlog();
  Metrics& m = metrics();
  if (invalid > 0) m.usage_dropped.fetch_add(invalid, std::memory_order_relaxed);
  std::string error = spill_.is_open() ? spill_.append(lines) : "no spill file";
  if (error.empty()) {
    m.usage_spilled.fetch_add(encoded, std::memory_order_relaxed);
    if (stopping_) drain_result_.spilled += encoded;
  } else {
    m.usage_dropped.fetch_add(encoded, std::memory_order_relaxed);
    if (stopping_) drain_result_.dropped += encoded;
    core::log_error("usage: in-memory bound reached and the spill file failed; events dropped",
                    {{"detail", error}});
  }
}

std::optional<UsageBatch> UsageWriter::read_spill_batch() {
  std::string error;
  std::optional<UsageSpill::Chunk> chunk = spill_.read(options_.batch_size, spill_read_max_bytes, error);
  if (!chunk) {
    core::log_error("usage: cannot replay the spill file; leaving it as it is", {{"detail", error}});
    spill_.close();  // nothing pending any more: no busy loop over a file that cannot be read
    return std::nullopt;
  }
  UsageBatch batch = usage_batch_from_spill(std::move(chunk->data), chunk->end);
  if (options_.custom) {
    // A line of keygate's own format (the file of an earlier store.schema: keygate) would be
    // refused line by line; drop such lines at once.
    if (const std::size_t foreign = keep_custom_usage_lines(batch); foreign > 0) {
      metrics().usage_dropped.fetch_add(foreign, std::memory_order_relaxed);
      core::log_error("usage: spill file lines not in the custom usage table's format were dropped",
                      {{"detail", std::to_string(foreign)}});
    }
  }
  return batch;
}

// A replayed batch is done with (stored, or its one refused line dropped).
void UsageWriter::consume_spill(const UsageBatch& batch) {
  if (!batch.from_spill || batch.spill_end == 0) return;
  if (std::string error = spill_.consumed(batch.spill_end); !error.empty()) {
    core::log_error("usage: spill file", {{"detail", error}});
  }
}

// At shutdown, whatever is left goes to the spill file, to be replayed by the next start.
void UsageWriter::spill_leftovers() {
  std::string lines;
  std::size_t count = 0;
  for (UsageBatch& b : in_flight_) {
    if (b.from_spill) continue;  // still in the file
    b.stage(process_id_);
    lines += b.data;
    count += b.lines();
  }
  in_flight_.clear();
  for (std::size_t i = backlog_head_; i < backlog_.size(); ++i) {
    if (append_line(lines, backlog_[i])) ++count;
  }
  backlog_.clear();
  backlog_head_ = 0;
  if (count == 0) return;
  std::string error = spill_.is_open() ? spill_.append(lines) : "no spill file";
  if (error.empty()) error = spill_.sync();
  if (error.empty()) {
    metrics().usage_spilled.fetch_add(count, std::memory_order_relaxed);
    drain_result_.spilled += count;
    core::log_warn("usage: events left at shutdown were kept in the spill file",
                   {{"detail", std::to_string(count) + " events in " + spill_.path()}});
  } else {
    metrics().usage_dropped.fetch_add(count, std::memory_order_relaxed);
    drain_result_.dropped += count;
    core::log_error("usage: events left at shutdown were lost", {{"detail", error}});
  }
}

// ---- writing --------------------------------------------------------------------------------

asio::awaitable<void> UsageWriter::flush_loop() {
  SteadyTime next_flush = SteadyClock::now() + options_.flush_interval;
  for (;;) {
    collect();
    if (stopping_) break;
    const SteadyTime now = SteadyClock::now();
    const bool time_due = now >= next_flush;
    const bool last_used_due = last_used_.due(now);
    const bool work = !in_flight_.empty() || backlog_size() >= options_.batch_size ||
                      (time_due && backlog_size() > 0) || spill_.pending() || last_used_due ||
                      connection_.maintenance_due(now);
    if (!work) {
      if (time_due) next_flush = now + options_.flush_interval;
      co_await sleep_until(last_used_.empty() ? next_flush : std::min(next_flush, last_used_.due_at()));
      continue;
    }
    if (!co_await connection_.ensure_ready(now + options_.connect_timeout + options_.query_timeout)) {
      co_await back_off(backoff_);
      continue;
    }
    if (in_flight_.empty()) {
      // Memory first when a batch is full or due (it is the bounded resource), else replay.
      if (backlog_size() > 0 && (backlog_size() >= options_.batch_size || time_due || !spill_.pending())) {
        in_flight_.push_back(take_batch());
      } else if (spill_.pending()) {
        if (auto batch = read_spill_batch()) in_flight_.push_back(std::move(*batch));
      }
    }
    if (!in_flight_.empty()) {
      if (co_await write_front(SteadyClock::now() + options_.query_timeout) == WriteOutcome::retry) {
        co_await back_off(backoff_);
        continue;
      }
    }
    if (backlog_size() == 0 && in_flight_.empty()) next_flush = SteadyClock::now() + options_.flush_interval;
    if (last_used_due) co_await flush_last_used(SteadyClock::now() + options_.query_timeout);
    update_depth();
  }
  co_await drain();
}

asio::awaitable<UsageWriter::WriteOutcome> UsageWriter::write_front(SteadyTime deadline) {
  UsageBatch& batch = in_flight_.front();
  const UsageConnection::Written written = co_await connection_.write(batch, deadline);
  using Outcome = UsageConnection::Written::Outcome;
  switch (written.outcome) {
    case Outcome::stored: {
      Metrics& m = metrics();
      m.usage_written.fetch_add(written.rows, std::memory_order_relaxed);
      if (batch.from_spill) m.usage_replayed.fetch_add(batch.lines(), std::memory_order_relaxed);
      consume_spill(batch);
      if (stopping_) drain_result_.written += written.rows;
      in_flight_.pop_front();
      backoff_ = options_.retry_min;
      co_return WriteOutcome::stored;
    }
    case Outcome::retry:
      if (written.commit_unknown) {
        // At-least-once (usage_custom.hpp): written again, possibly twice.
        metrics().usage_possibly_duplicated.fetch_add(batch.lines(), std::memory_order_relaxed);
        core::log_warn("usage: a batch's COMMIT got no answer; writing it again, its rows may be doubled",
                       {{"detail", std::to_string(batch.lines()) + " rows"}});
      }
      co_return WriteOutcome::retry;
    case Outcome::restaged:
      co_return WriteOutcome::split;
    case Outcome::refused:
      co_return handle_refusal(written.error);
  }
  co_return WriteOutcome::retry;
}

// PostgreSQL refused a row of the front batch (staged): once more as it is, then halve until
// the bad line stands alone, and drop only that one.
UsageWriter::WriteOutcome UsageWriter::handle_refusal(const std::string& error) {
  UsageBatch& batch = in_flight_.front();
  switch (next_refusal_step(batch)) {
    case UsageRefusalStep::retry_as_is:
      break;
    case UsageRefusalStep::drop_line: {
      core::log_error("usage: dropped an event PostgreSQL refuses", {{"detail", error}});
      metrics().usage_dropped.fetch_add(1, std::memory_order_relaxed);
      metrics().usage_refused.fetch_add(1, std::memory_order_relaxed);
      if (stopping_) ++drain_result_.dropped;
      consume_spill(batch);
      in_flight_.pop_front();
      break;
    }
    case UsageRefusalStep::halve: {
      auto [first, second] = halve_usage_batch(batch);
      in_flight_.pop_front();
      in_flight_.push_front(std::move(second));
      in_flight_.push_front(std::move(first));
      break;
    }
  }
  return WriteOutcome::split;
}

asio::awaitable<void> UsageWriter::flush_last_used(SteadyTime deadline) {
  if (last_used_.empty()) co_return;
  // The rows in a variable of their own: with the temporary bound to the coroutine's reference
  // parameter inside `if (co_await ...)`, g++ 12's code died of SIGILL here.
  const LastUsedTimes::Rows rows = last_used_.rows();
  const UsageConnection::LastUsedOutcome outcome = co_await connection_.update_last_used(rows, deadline);
  // Failed: the times are kept, merged with newer ones and sent next time.
  if (outcome != UsageConnection::LastUsedOutcome::failed) last_used_.sent(SteadyClock::now());
}

// ---- shutdown -------------------------------------------------------------------------------

asio::awaitable<void> UsageWriter::drain() {
  queue_.close();
  collect();  // the producers have stopped: this is the last of it
  const SteadyTime deadline = drain_deadline_;
  milliseconds pause = options_.retry_min;
  while ((!in_flight_.empty() || backlog_size() > 0) && SteadyClock::now() < deadline) {
    if (!connection_.connected()) {
      const bool ready = co_await connection_.ensure_ready(deadline);
      if (!ready) {
        if (SteadyClock::now() + pause >= deadline) break;
        co_await back_off(pause);
        continue;
      }
    }
    if (in_flight_.empty()) in_flight_.push_back(take_batch());
    if (co_await write_front(deadline) == WriteOutcome::retry) {
      if (SteadyClock::now() + pause >= deadline) break;
      co_await back_off(pause);
    }
  }
  spill_leftovers();
  if (!writes_rows() && !last_used_.empty() && SteadyClock::now() < deadline) {
    // Last-used times only (a custom target without a usage table): no batch opened the
    // connection.
    co_await connection_.ensure_ready(deadline);
  }
  if (!last_used_.empty() && connection_.connected() && SteadyClock::now() < deadline) {
    co_await flush_last_used(deadline);
  }
  update_depth();
  connection_.close();
  spill_.close();
}

}  // namespace keygate::store

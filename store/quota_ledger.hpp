#pragma once
// Quotas outlive Redis: the used count of each key's current quota period, persisted to
// PostgreSQL (table api_key_quota_usage, migration 0003) in the background.
//
// Redis holds the live count (kg:q:{<key id>}:<period start>, decremented atomically by the
// rate-limit script, store/redis_rate_counter.cpp). Every count the script reports is `note`d
// here; a flush loop on the worker's executor upserts the latest count per key every
// `flush_interval` (one statement per flush, keeping the larger count of a period, so the
// workers and replicas writing the same key never move it backwards). When the Redis count is
// missing (first use, Redis restarted or flushed), the script refuses to guess and the counter
// `load`s the persisted count, which the script then sets unless another worker did first.
//
// Bound on over-admission after a Redis loss: the requests admitted (fleet-wide) since the
// last successful flush, i.e. about one flush_interval of a key's traffic, plus, while
// PostgreSQL is unreachable, everything not yet flushed. Nothing else is handed out again.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

namespace keygate::store {

class PgPool;

// What store::RedisRateCounter needs to persist quota counts; an interface so the counter is
// tested with an in-memory ledger too.
class QuotaLedger {
 public:
  virtual ~QuotaLedger() = default;
  // The persisted count of `key_id` in the period starting at `period_start_s` (epoch seconds;
  // 0 for a quota that never refills): 0 when nothing is stored for that period, nullopt when
  // the store cannot be read.
  virtual boost::asio::awaitable<std::optional<std::int64_t>> load(std::string key_id,
                                                                   std::int64_t period_start_s) = 0;
  // The latest count Redis reported; persisted later. Never blocks, never fails.
  virtual void note(const std::string& key_id, std::int64_t period_start_s, std::int64_t used) = 0;
};

struct QuotaLedgerOptions {
  std::chrono::milliseconds flush_interval{1000};
  std::size_t max_pending = 100'000;  // keys waiting to be written; beyond: the note is dropped
};

// The PostgreSQL ledger of one worker, on that worker's pool and executor. Not thread-safe.
class PgQuotaLedger final : public QuotaLedger {
 public:
  PgQuotaLedger(boost::asio::any_io_executor executor, PgPool& pool, QuotaLedgerOptions options = {});
  ~PgQuotaLedger() override;

  void start();  // the flush loop
  void stop();   // one last flush (if anything is pending), then the loop ends

  boost::asio::awaitable<std::optional<std::int64_t>> load(std::string key_id,
                                                           std::int64_t period_start_s) override;
  void note(const std::string& key_id, std::int64_t period_start_s, std::int64_t used) override;

  // Writes what is pending now; false when PostgreSQL failed (the counts stay pending).
  boost::asio::awaitable<bool> flush();
  std::size_t pending() const { return pending_.size(); }

 private:
  struct Count {
    std::int64_t period_start_s = 0;
    std::int64_t used = 0;
  };
  boost::asio::awaitable<void> run();
  static void merge(std::unordered_map<std::string, Count>& into, const std::string& key_id, Count count);

  boost::asio::any_io_executor executor_;
  PgPool& pool_;
  QuotaLedgerOptions options_;
  boost::asio::steady_timer timer_;
  std::unordered_map<std::string, Count> pending_;
  struct LoopState {
    bool stopping = false;
    bool destroyed = false;
  };
  std::shared_ptr<LoopState> state_ = std::make_shared<LoopState>();
};

}  // namespace keygate::store

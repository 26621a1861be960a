#pragma once
// A small pool of PostgreSQL connections for one executor (one worker thread): connections are
// opened lazily up to pool_size, callers beyond that queue, broken connections are discarded
// and replaced, and while PostgreSQL is unreachable calls fail at once (the last failure is
// remembered for a backoff that grows to a few seconds) instead of hammering it.
// Not thread-safe: use it from its executor only. It must outlive every lease, and may be
// destroyed once its io_context has stopped (callers still queued in it were destroyed).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "store/metrics.hpp"
#include "store/pg_connection.hpp"

namespace keygate::store {

struct PgOptions {
  std::string dsn;
  unsigned pool_size = 4;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{2000};
};

class PgPool;

// A connection borrowed from the pool, or the reason there is none. Returned on destruction;
// a connection left broken or inside a transaction is discarded instead of reused.
class PgLease {
 public:
  PgLease() = default;
  PgLease(PgLease&& other) noexcept;
  PgLease& operator=(PgLease&& other) noexcept;
  ~PgLease();

  bool ok() const { return connection_ != nullptr; }
  PgStatus status() const { return status_; }
  const std::string& error() const { return error_; }
  // The connection served earlier callers: it may have gone stale while idle.
  bool reused() const { return reused_; }

  PgConnection& operator*() const { return *connection_; }
  PgConnection* operator->() const { return connection_.get(); }

 private:
  friend class PgPool;
  void give_back();

  PgPool* pool_ = nullptr;
  std::unique_ptr<PgConnection> connection_;
  bool reused_ = false;
  PgStatus status_ = PgStatus::connection_error;
  std::string error_;
};

// Optional per-call accounting: statements actually sent, and their latency.
struct PgQueryMetrics {
  Counter* sent = nullptr;
  LatencyHistogram* latency = nullptr;
};

class PgPool {
 public:
  PgPool(boost::asio::any_io_executor executor, PgOptions options);
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // A connection within connect_timeout (or query_timeout when all are busy), or the failure.
  boost::asio::awaitable<PgLease> acquire();

  // One statement on any connection, with query_timeout. A reused connection that turns out
  // broken is replaced and the statement sent again, so use these for reads and other
  // statements that are safe to repeat; run writes on an acquire()d lease.
  boost::asio::awaitable<PgResult> query(std::string sql, PgParams params);
  boost::asio::awaitable<PgResult> query_prepared(const PgStatement& statement, PgParams params,
                                                  PgQueryMetrics accounting = {});

  const PgOptions& options() const { return options_; }
  const std::string& address() const { return address_; }
  unsigned open_connections() const { return open_; }
  std::size_t idle_connections() const { return idle_.size(); }

 private:
  friend class PgLease;
  struct Waiter;

  void give_back(std::unique_ptr<PgConnection> connection);
  void note_connect_failure(std::string error);
  void note_connect_success();
  template <typename Send>
  boost::asio::awaitable<PgResult> run_repeatable(Send send, PgQueryMetrics accounting);

  boost::asio::any_io_executor executor_;
  PgOptions options_;
  std::string address_;
  unsigned open_ = 0;  // idle + leased + connecting
  std::vector<std::unique_ptr<PgConnection>> idle_;
  std::deque<Waiter*> waiters_;
  // While PostgreSQL is unreachable: fail at once until retry_after_.
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_failure_;
  unsigned lost_connections_ = 0;  // broken ones not yet replaced (counted as reconnects)
};

}  // namespace keygate::store

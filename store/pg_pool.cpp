#include "store/pg_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {
constexpr std::chrono::milliseconds first_backoff{250};
constexpr std::chrono::milliseconds max_backoff{5000};
}  // namespace

// ---------------------------------------------------------------------------------------------
// PgLease

PgLease::PgLease(PgLease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      connection_(std::move(other.connection_)),
      reused_(other.reused_),
      status_(other.status_),
      error_(std::move(other.error_)) {}

PgLease& PgLease::operator=(PgLease&& other) noexcept {
  if (this != &other) {
    give_back();
    pool_ = std::exchange(other.pool_, nullptr);
    connection_ = std::move(other.connection_);
    reused_ = other.reused_;
    status_ = other.status_;
    error_ = std::move(other.error_);
  }
  return *this;
}

PgLease::~PgLease() { give_back(); }

void PgLease::give_back() {
  if (pool_ != nullptr && connection_ != nullptr) pool_->give_back(std::move(connection_));
  connection_.reset();
  pool_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// PgPool

// A caller queued for a connection: woken by cancelling its timer, with a connection handed
// over, or with a free slot to open one itself. Queued for its whole life, so a coroutine
// frame destroyed while waiting (io_context shutdown) leaves no dangling entry.
struct PgPool::Waiter {
  explicit Waiter(PgPool& owner) : pool(owner), timer(owner.executor_) {
    pool.waiters_.push_back(this);
  }
  ~Waiter() {
    std::erase(pool.waiters_, this);
    if (handed) --pool.open_;  // handed over but never taken: it closes with this frame
  }
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  PgPool& pool;
  asio::steady_timer timer;
  std::unique_ptr<PgConnection> handed;
  bool slot_freed = false;
};

namespace {

// One slot counted in open_ while its connection is being opened; given back unless kept.
class OpeningSlot {
 public:
  explicit OpeningSlot(unsigned& open) : open_(open) { ++open_; }
  ~OpeningSlot() {
    if (!kept_) --open_;
  }
  OpeningSlot(const OpeningSlot&) = delete;
  OpeningSlot& operator=(const OpeningSlot&) = delete;
  void keep() { kept_ = true; }

 private:
  unsigned& open_;
  bool kept_ = false;
};

}  // namespace

PgPool::PgPool(asio::any_io_executor executor, PgOptions options)
    : executor_(std::move(executor)), options_(std::move(options)), address_(pg_address(options_.dsn)) {
  if (options_.pool_size == 0) options_.pool_size = 1;
}

PgPool::~PgPool() = default;

asio::awaitable<PgLease> PgPool::acquire() {
  auto make_lease = [this](std::unique_ptr<PgConnection> connection, bool reused) {
    PgLease lease;
    lease.pool_ = this;
    lease.connection_ = std::move(connection);
    lease.reused_ = reused;
    lease.status_ = PgStatus::ok;
    return lease;
  };
  auto failed = [](PgStatus status, std::string error) {
    PgLease lease;
    lease.status_ = status;
    lease.error_ = std::move(error);
    return lease;
  };

  const auto wait_deadline = SteadyClock::now() + options_.query_timeout;
  for (;;) {
    while (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      if (connection->usable()) co_return make_lease(std::move(connection), true);
      --open_;
      ++lost_connections_;
    }
    if (open_ < options_.pool_size) {
      if (SteadyClock::now() < retry_after_) co_return failed(PgStatus::connection_error, last_failure_);
      OpeningSlot slot(open_);
      auto connection = std::make_unique<PgConnection>(executor_);
      PgResult connected = co_await connection->connect(options_.dsn, options_.connect_timeout);
      if (!connected.ok()) {
        note_connect_failure(connected.error());
        co_return failed(connected.status(), connected.error());
      }
      slot.keep();
      note_connect_success();
      co_return make_lease(std::move(connection), false);
    }
    Waiter waiter(*this);
    waiter.timer.expires_at(wait_deadline);
    co_await waiter.timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (waiter.handed) co_return make_lease(std::move(waiter.handed), true);
    if (!waiter.slot_freed) {
      co_return failed(PgStatus::timeout,
                       "all " + std::to_string(options_.pool_size) +
                           " connections to PostgreSQL at " + address_ + " stayed busy for " +
                           std::to_string(options_.query_timeout.count()) + " ms");
    }
  }
}

void PgPool::give_back(std::unique_ptr<PgConnection> connection) {
  if (!connection->usable()) {
    connection.reset();
    --open_;
    ++lost_connections_;
    if (!waiters_.empty()) {
      Waiter* next = waiters_.front();
      waiters_.pop_front();
      next->slot_freed = true;
      next->timer.cancel();
    }
    return;
  }
  if (!waiters_.empty()) {
    Waiter* next = waiters_.front();
    waiters_.pop_front();
    next->handed = std::move(connection);
    next->timer.cancel();
    return;
  }
  idle_.push_back(std::move(connection));
}

void PgPool::note_connect_failure(std::string error) {
  backoff_ = std::clamp(backoff_ * 2, first_backoff, max_backoff);
  retry_after_ = SteadyClock::now() + backoff_;
  last_failure_ = std::move(error);
  // Queued callers learn of the failure now rather than when their wait ends.
  while (!waiters_.empty()) {
    Waiter* next = waiters_.front();
    waiters_.pop_front();
    next->slot_freed = true;
    next->timer.cancel();
  }
}

void PgPool::note_connect_success() {
  backoff_ = std::chrono::milliseconds{0};
  retry_after_ = {};
  if (lost_connections_ > 0) {
    --lost_connections_;
    metrics().postgres_reconnects.fetch_add(1, std::memory_order_relaxed);
  }
}

template <typename Send>
asio::awaitable<PgResult> PgPool::run_repeatable(Send send, PgQueryMetrics accounting) {
  for (unsigned attempt = 0;; ++attempt) {
    PgLease lease = co_await acquire();
    if (!lease.ok()) co_return PgResult::failure(lease.status(), lease.error());
    if (accounting.sent != nullptr) accounting.sent->fetch_add(1, std::memory_order_relaxed);
    const auto start = SteadyClock::now();
    PgResult result = co_await send(*lease);
    if (accounting.latency != nullptr) {
      accounting.latency->observe_us(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start).count()));
    }
    // A connection that died while idle (server restart) says so only when used: try a fresh one.
    if (result.status() == PgStatus::connection_error && lease.reused() &&
        attempt < options_.pool_size) {
      continue;
    }
    co_return result;
  }
}

asio::awaitable<PgResult> PgPool::query(std::string sql, PgParams params) {
  co_return co_await run_repeatable(
      [&](PgConnection& connection) { return connection.query(sql, params, options_.query_timeout); },
      {});
}

asio::awaitable<PgResult> PgPool::query_prepared(const PgStatement& statement, PgParams params,
                                                 PgQueryMetrics accounting) {
  co_return co_await run_repeatable(
      [&](PgConnection& connection) {
        return connection.query_prepared(statement, params, options_.query_timeout);
      },
      accounting);
}

}  // namespace keygate::store

#include "store/key_change_listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "store/metrics.hpp"
#include "store/pg_connection.hpp"

namespace keygate::store {
namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

std::optional<KeyHash> hash_from_hex(std::string_view text) {
  KeyHash hash{};
  if (!core::decode_hex(text, hash)) return std::nullopt;
  return hash;
}

// What the loop needs, copied out of the listener: it may outlive the listener by one wait
// (at most a second, or a connect timeout) after stop().
struct ListenLoop {
  std::shared_ptr<KeyChangeListener::State> state;
  std::string dsn;
  milliseconds timeout;
  KeyChangeListener::ChangeHandler on_change;
  KeyChangeListener::ResyncHandler on_resync;
  KeyChangeListener::Table table;
  KeyChangeListener::Poll poll;

  bool stopped() const { return state->stopped.load(); }
  bool polling() const { return !poll.statement.empty(); }

  void changed(std::string_view hex) const {
    if (auto hash = hash_from_hex(hex); hash && !stopped()) on_change(*hash);
  }

  // LISTEN, then the keys changed while we were not listening (2 s of margin for commits in
  // flight then): since we last heard from PostgreSQL (`last_alive`, its own clock), or, on
  // the first connect, since this process started (it may have cached keys from Redis).
  asio::awaitable<PgResult> listen(PgConnection& connection, const std::string& last_alive,
                                   std::chrono::steady_clock::time_point started,
                                   std::string& signature) const {
    if (polling()) {
      // The first signature of this connection: what later polls compare with.
      PgResult first = co_await connection.query(poll.statement, {}, timeout);
      if (first.ok()) signature = std::string(first.get(0, 0));
      co_return first;
    }
    PgResult listening =
        co_await connection.execute(std::string("LISTEN ") + key_changed_channel, timeout);
    if (!listening.ok() || table == KeyChangeListener::Table::custom) co_return listening;
    PgParams since;
    std::string sql = "SELECT encode(key_hash, 'hex') FROM api_keys WHERE updated_at >= ";
    if (last_alive.empty()) {
      const auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::steady_clock::now() - started);
      since.emplace_back(std::to_string(elapsed.count() + 2));
      sql += "now() - make_interval(secs => $1::double precision)";
    } else {
      since.emplace_back(last_alive);
      sql += "$1::timestamptz - interval '2 seconds'";
    }
    PgResult missed = co_await connection.query(std::move(sql), std::move(since), timeout);
    if (missed.ok()) {
      for (int row = 0; row < missed.rows(); ++row) changed(missed.get(row, 0));
    }
    co_return missed;
  }

  // Polls the table's change signature every poll.interval until the connection fails (its
  // reason) or stop(); a changed signature drops the in-process cache.
  asio::awaitable<std::string> serve_polls(PgConnection& connection, std::string& last_alive,
                                           std::string& signature) const {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    while (!stopped()) {
      last_alive = "polled";  // what a reconnect checks: this connection has served
      // In slices of at most a second, so that the loop outlives stop() by at most that.
      for (milliseconds left = poll.interval; left.count() > 0 && !stopped();) {
        const milliseconds slice = std::min(left, milliseconds(1000));
        pause.expires_after(slice);
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        left -= slice;
      }
      if (stopped()) break;
      PgResult now = co_await connection.query(poll.statement, {}, timeout);
      if (!now.ok()) co_return now.error();
      if (std::string_view value = now.get(0, 0); value != signature) {
        signature = std::string(value);
        metrics().invalidations.fetch_add(1, std::memory_order_relaxed);
        on_resync();
      }
    }
    co_return std::string();
  }

  // Hands each notice to on_change until the connection fails (its reason) or stop().
  asio::awaitable<std::string> serve(PgConnection& connection, std::string& last_alive) const {
    while (!stopped()) {
      // Re-LISTENing is a no-op that keeps pg_stat_activity saying what this connection is
      // for; now() is PostgreSQL's clock for the catch-up query after a reconnect.
      PgResult clock = co_await connection.execute(
          std::string("LISTEN ") + key_changed_channel + "; SELECT now()::text", timeout);
      if (!clock.ok()) co_return clock.error();
      last_alive = std::string(clock.get(0, 0));
      PgNotificationResult next = co_await connection.wait_notification(milliseconds(1000));
      if (next.status != PgStatus::ok) co_return next.error;
      if (!next.notification) continue;
      metrics().invalidations.fetch_add(1, std::memory_order_relaxed);
      if (table == KeyChangeListener::Table::custom) {
        on_resync();  // the notice cannot name a cached key (bcrypt, a pepper): drop them all
      } else {
        changed(next.notification->payload);
      }
    }
    co_return std::string();
  }

  asio::awaitable<void> run() const {
    const auto executor = co_await asio::this_coro::executor;
    milliseconds backoff{100};
    asio::steady_timer pause(executor);
    const auto started = std::chrono::steady_clock::now();
    std::string last_alive;  // PostgreSQL's clock when we last knew we were listening
    std::string signature;   // polling: the table's change signature at the last poll
    bool failure_logged = false;
    while (!stopped()) {
      PgConnection connection(executor);
      PgResult opened = co_await connection.connect(dsn, timeout);
      if (opened.ok()) opened = co_await listen(connection, last_alive, started, signature);
      if (opened.ok() && !stopped()) {
        state->listening.store(true);
        backoff = milliseconds(100);
        if (failure_logged) {
          core::log_info(polling() ? "key changes: polling again" : "key changes: listening again",
                         {{"postgres", connection.address()}});
        }
        failure_logged = false;
        // After a reconnect L1 may hold anything read while we were not listening. (Not on
        // the first connect: that would only throw away what requests cached meanwhile.)
        if (!last_alive.empty()) on_resync();
        // Not `polling() ? co_await a : co_await b`: g++ 12 destroys such a result twice.
        std::string lost;
        if (polling()) {
          lost = co_await serve_polls(connection, last_alive, signature);
        } else {
          lost = co_await serve(connection, last_alive);
        }
        state->listening.store(false);
        if (stopped()) break;
        metrics().postgres_reconnects.fetch_add(1, std::memory_order_relaxed);
        core::log_warn("key changes: connection lost; reconnecting", {{"error", lost}});
      } else if (!opened.ok() && !failure_logged) {
        // Once an outage: a name that does not resolve, a refused connection, a bad password.
        core::log_warn("key changes: not listening; retrying", {{"error", opened.error()}});
        failure_logged = true;
      }
      if (stopped()) break;
      pause.expires_after(backoff);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      backoff = std::min(backoff * 2, milliseconds(2000));
    }
  }
};

}  // namespace

KeyChangeListener::KeyChangeListener(asio::any_io_executor executor, std::string dsn,
                                     milliseconds connect_timeout, ChangeHandler on_change,
                                     ResyncHandler on_resync, Table table, Poll poll)
    : executor_(std::move(executor)),
      dsn_(std::move(dsn)),
      connect_timeout_(connect_timeout),
      on_change_(std::move(on_change)),
      on_resync_(std::move(on_resync)),
      table_(table),
      poll_(std::move(poll)) {}

KeyChangeListener::~KeyChangeListener() { stop(); }

void KeyChangeListener::stop() { state_->stopped.store(true); }

void KeyChangeListener::start() {
  auto loop = std::make_shared<ListenLoop>(
      ListenLoop{state_, dsn_, connect_timeout_, on_change_, on_resync_, table_, poll_});
  asio::co_spawn(
      executor_, [loop]() -> asio::awaitable<void> { co_await loop->run(); }, asio::detached);
}

}  // namespace keygate::store

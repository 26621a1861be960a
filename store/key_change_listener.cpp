#include "store/key_change_listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>

#include "store/metrics.hpp"
#include "store/pg_connection.hpp"

namespace keygate::store {
namespace asio = boost::asio;

namespace {

std::optional<KeyHash> hash_from_notice(std::string_view payload) {
  if (payload.size() != 64) return std::nullopt;
  KeyHash hash{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < hash.size(); ++i) {
    const int hi = nibble(payload[2 * i]), lo = nibble(payload[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    hash[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return hash;
}

}  // namespace

KeyChangeListener::KeyChangeListener(asio::any_io_executor executor, std::string dsn,
                                     std::chrono::milliseconds connect_timeout,
                                     ChangeHandler on_change, ResyncHandler on_resync)
    : executor_(std::move(executor)),
      dsn_(std::move(dsn)),
      connect_timeout_(connect_timeout),
      on_change_(std::move(on_change)),
      on_resync_(std::move(on_resync)) {}

KeyChangeListener::~KeyChangeListener() { stop(); }

void KeyChangeListener::stop() { state_->stopped.store(true); }

void KeyChangeListener::start() {
  // The loop holds the state by shared_ptr and the rest by copy: it may outlive `this` by one
  // wait (at most a second) after stop().
  asio::co_spawn(
      executor_,
      [state = state_, executor = executor_, dsn = dsn_, timeout = connect_timeout_,
       on_change = on_change_, on_resync = on_resync_]() -> asio::awaitable<void> {
        std::chrono::milliseconds backoff{100};
        asio::steady_timer pause(executor);
        const auto started = std::chrono::steady_clock::now();
        // PostgreSQL's clock at the last moment we know we were listening: after a reconnect,
        // every key changed since then (notices we missed) is handed to on_change.
        std::string last_alive;
        while (!state->stopped.load()) {
          PgConnection connection(executor);
          PgResult opened = co_await connection.connect(dsn, timeout);
          if (opened.ok()) {
            opened = co_await connection.execute(std::string("LISTEN ") + key_changed_channel, timeout);
          }
          if (opened.ok()) {
            // Changes committed while we were not listening (2 s of margin for commits in
            // flight then): since we last heard from PostgreSQL, or, on the first connect,
            // since this process started (it may have cached keys from Redis meanwhile).
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
              for (int row = 0; row < missed.rows(); ++row) {
                if (auto hash = hash_from_notice(missed.get(row, 0))) on_change(*hash);
              }
            } else {
              opened = std::move(missed);
            }
          }
          if (opened.ok()) {
            state->listening.store(true);
            backoff = std::chrono::milliseconds(100);
            // After a reconnect L1 may hold anything read while we were not listening. (Not on
            // the first connect: that would only throw away what requests cached meanwhile.)
            if (!last_alive.empty()) on_resync();
            while (!state->stopped.load()) {
              // Re-LISTENing is a no-op that keeps pg_stat_activity saying what this
              // connection is for; now() is PostgreSQL's clock for the catch-up query.
              PgResult clock = co_await connection.execute(
                  std::string("LISTEN ") + key_changed_channel + "; SELECT now()::text", timeout);
              if (!clock.ok()) break;
              last_alive = std::string(clock.get(0, 0));
              PgNotificationResult next =
                  co_await connection.wait_notification(std::chrono::milliseconds(1000));
              if (next.status != PgStatus::ok) break;
              if (!next.notification) continue;
              if (auto hash = hash_from_notice(next.notification->payload)) {
                metrics().invalidations.fetch_add(1, std::memory_order_relaxed);
                on_change(*hash);
              }
            }
            state->listening.store(false);
            if (!state->stopped.load()) {
              metrics().postgres_reconnects.fetch_add(1, std::memory_order_relaxed);
            }
          }
          if (state->stopped.load()) break;
          pause.expires_after(backoff);
          co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
          backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        }
      },
      asio::detached);
}

}  // namespace keygate::store

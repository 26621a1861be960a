#pragma once
// The shared sliding-window counters: one atomic Lua script per request, through RedisClient.
// Only I/O lives here; the arithmetic (and the formula the script implements) is in
// authz/sliding_window.hpp, which chooses the ticks and derives the headers from the counts.
//
// Redis keys: "<counter>:<window index>", e.g. "kg:rl:{<key id>}:60s:28433172" — the caller's
// counter name carries a {hash tag} so both windows of one counter live on one Cluster slot.
// The current window's key expires by itself once it can no longer be the previous window.
//
// Time comes from the caller (keygate's clock, injected), not Redis TIME: the same code path
// is then testable with scripted arrival times (window edges, no sleeping), the fallback and
// the script see the same instants, and the script stays deterministic. Replicas' clocks are
// NTP-synced; a skew of d ms shifts the weighting of one window by d/W, which is negligible.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string_view>

namespace keygate::store {

class RedisClient;
class RedisScript;

// One request against one counter, in ticks (see authz::SlidingWindow).
struct WindowHit {
  std::string_view counter;       // key name without the window index
  std::int64_t limit = 1;         // L
  std::int64_t window_ticks = 1;  // W
  std::int64_t now_ticks = 0;     // t
  std::int64_t tick_ms = 1;       // for the keys' expiry only
};

struct WindowHitResult {
  enum class Status { ok, unavailable };
  Status status = Status::unavailable;
  bool allowed = false;
  std::int64_t previous = 0;  // p
  std::int64_t current = 0;   // c, after this request
};

// What authz::RateLimiter needs from a shared counter store; an interface so that the limiter's
// decisions (near cache, fallback modes) are unit-tested without Redis. Never throws.
class RateCounter {
 public:
  virtual ~RateCounter() = default;
  // False when a call would fail at once (e.g. no connection): the caller skips it.
  virtual bool available() const = 0;
  virtual boost::asio::awaitable<WindowHitResult> hit(const WindowHit& request) = 0;
};

// The Redis implementation; one per worker, on that worker's RedisClient.
class RedisRateCounter final : public RateCounter {
 public:
  explicit RedisRateCounter(RedisClient& redis);
  bool available() const override;
  // One EVALSHA (EVAL after NOSCRIPT, inside RedisClient); counts metrics().ratelimit_redis_calls.
  boost::asio::awaitable<WindowHitResult> hit(const WindowHit& request) override;

  static const RedisScript& sliding_window_script();

 private:
  RedisClient& redis_;
};

}  // namespace keygate::store

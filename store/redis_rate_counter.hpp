#pragma once
// The shared sliding-window counters and quotas: one atomic Lua script per request, through
// RedisCommands. Only I/O lives here; the arithmetic (and the formula the script implements) is
// in authz/sliding_window.hpp, which chooses the ticks and derives the headers from the counts.
//
// Redis keys (the caller's counter name carries a {hash tag}, so one key's keys share a
// Cluster slot):
//   "<counter>", e.g. "kg:rl:{<key id>}:60s"   a hash: bucket index -> requests allowed in it;
//        buckets that have left the window are deleted, and the hash expires by itself once
//        its newest bucket has left.
//   "kg:q:{<key id>}:<period start, epoch s>"   requests used of the key's quota in the period
//        (":0" for a quota that never refills); expires a minute after its period ends. Its
//        {hash tag} is the counter's (quota_key_name), so that the script's two keys are in one
//        Cluster slot also when the counter's tag carries a custom table's namespace.
//
// The script decides the quota and the window together: a request is counted in both or in
// neither. A used-up quota answers before the window is looked at.
//
// Time comes from the caller (keygate's clock, injected), not Redis TIME: the same code path
// is then testable with scripted arrival times (window edges, no sleeping), the fallback and
// the script see the same instants, and the script stays deterministic. Replicas' clocks are
// NTP-synced; a skew of d ms shifts the weighting of one bucket by d/B, which is negligible.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::store {

class QuotaLedger;
class RedisCommands;
class RedisScript;

// The quota a request is counted against (see store/quota_ledger.hpp).
struct QuotaHit {
  std::string_view key_id;
  std::int64_t quota = 0;           // requests per period (or in all)
  std::int64_t period_start_s = 0;  // the current period's start (epoch s); 0: never refills
  std::int64_t expire_ms = 0;       // the Redis key's lifetime from now; 0: none
};

// One request against one counter, in ticks (see authz::SlidingWindow).
struct WindowHit {
  std::string_view counter;       // the hash's name
  std::int64_t limit = 1;         // L
  std::int64_t bucket_ticks = 1;  // B
  std::int64_t buckets = 1;       // N
  std::int64_t now_ticks = 0;     // t
  std::int64_t tick_ms = 1;       // for the keys' expiry only
  const QuotaHit* quota = nullptr;  // null: the key has no quota
  // Lease (authz/sliding_window.hpp, LEASES): count up to `want` requests at once (1: this one
  // only). Keys with a quota are counted one request per call.
  std::int64_t want = 1;
  // Unused requests of an earlier lease, counted in bucket `give_back_index`: taken out of that
  // bucket (if it is still kept) before deciding.
  std::int64_t give_back = 0;
  std::int64_t give_back_index = 0;
};

struct WindowHitResult {
  enum class Status {
    ok,
    unavailable,        // Redis: no connection, timeout or error reply
    quota_unavailable,  // the quota's count is in neither Redis nor (readable) PostgreSQL
  };
  enum class Verdict { allowed, rate_limited, quota_exceeded };
  Status status = Status::unavailable;
  Verdict verdict = Verdict::rate_limited;
  // After this call: p (the oldest bucket) and c (the sum of the N newer ones), and, only
  // when the request was refused (Retry-After needs them), all N+1 buckets, oldest first.
  std::int64_t previous = 0;
  std::int64_t current = 0;
  std::vector<std::int64_t> counts;
  std::int64_t granted = 0;      // requests counted by this call: 0, 1, or a lease
  std::int64_t quota_used = -1;  // after this request; -1 without a quota

  bool allowed() const { return verdict == Verdict::allowed; }
};

// What the sliding-window script answered, checked: `ok` false for anything but the shapes it
// returns (a reply of another shape is Redis misbehaving: the caller treats it as Redis
// unavailable). Pure; exposed for tests and tests/fuzz.
enum class ScriptStatus { rate_limited = 0, allowed = 1, quota_exceeded = 2, quota_missing = 3 };
struct WindowScriptReply {
  bool ok = false;
  ScriptStatus status = ScriptStatus::rate_limited;
  WindowHitResult result;
};
struct RedisResult;
WindowScriptReply parse_window_script_reply(const RedisResult& redis, std::int64_t buckets);

// The quota count's Redis key for a request counted in `counter`: "kg:q:{<counter's tag>}:<period>".
std::string quota_key_name(std::string_view counter, std::int64_t period_start_s);

// What authz::RateLimiter needs from a shared counter store; an interface so that the limiter's
// decisions (near cache, fallback modes) are unit-tested without Redis. Never throws.
class RateCounter {
 public:
  virtual ~RateCounter() = default;
  // False when a call would fail at once (e.g. no connection): the caller skips it.
  virtual bool available() const = 0;
  virtual boost::asio::awaitable<WindowHitResult> hit(const WindowHit& request) = 0;
};

// The Redis implementation; one per worker, on that worker's RedisCommands (one server or a
// cluster) and QuotaLedger.
class RedisRateCounter final : public RateCounter {
 public:
  // `ledger` null: quotas are not persisted, and a missing count starts from 0.
  explicit RedisRateCounter(RedisCommands& redis, QuotaLedger* ledger = nullptr);
  bool available() const override;
  // One EVALSHA (EVAL after NOSCRIPT, inside RedisCommands); a second one after loading a missing
  // quota count. Each counts in metrics().ratelimit_redis_calls.
  boost::asio::awaitable<WindowHitResult> hit(const WindowHit& request) override;

  static const RedisScript& sliding_window_script();

 private:
  RedisCommands& redis_;
  QuotaLedger* ledger_;
};

}  // namespace keygate::store

#pragma once
// Sliding-window counter: the rate-limit arithmetic, pure (no I/O, time passed in), and the
// per-process limiter built on it. The same arithmetic runs in Redis as a Lua script
// (store/redis_rate_counter.cpp); this header is the one place the formula is written down.
//
// THE FORMULA. Time is counted in ticks (1 ms, or 1 s for policies too large for ms, see
// `SlidingWindow::make`). For a limit L per window of W ticks at time t:
//
//   i = floor(t / W)            index of the current fixed window; it starts at s = i*W
//   e = t - i*W                 ticks elapsed in the current window, 0 <= e < W
//   p = count of window i-1     requests allowed in the previous fixed window
//   c = count of window i       requests allowed so far in the current one
//
//   estimate = p * (W - e) / W + c   (the previous window weighted by how much of it still
//                                     overlaps the sliding window ending now)
//   allowed  <=>  estimate + 1 <= L  <=>  p*(W - e) + (c + 1)*W <= L*W   (integers, exact)
//
// An allowed request increments c; a rejected one changes nothing. p and c are first capped
// at L (they exceed it only after a limit was lowered). `SlidingWindow::make` keeps L*W <= 2^50,
// so every term is an integer below 2^53: Lua's doubles compute exactly what the C++ computes
// in int64, and the two agree on every decision.
//
// Derived values (C++ only; the script returns p and c and the caller derives them here):
//   remaining   = max(0, floor((L*W - p*(W - e) - c'*W) / W)), c' = count after this request
//   retry_after = 0 if allowed, else the ticks until the first instant at which a request
//                 would be allowed if no other request came (may lie in the next window)
//   reset       = ticks until the estimate decays to 0, i.e. the full limit is available
//                 again: 2W - e if c' > 0, W - e if only p > 0, 0 if both are 0
#include <cstdint>
#include <string>
#include <unordered_map>

namespace keygate::authz {

// One limit, in ticks. Build it with `make`, which picks the tick and clamps absurd limits.
struct SlidingWindow {
  std::int64_t limit = 1;          // L, >= 1
  std::int64_t window_ticks = 1;   // W, >= 1
  std::int64_t tick_ms = 1;        // 1, or 1000 when limit * window_ms would exceed 2^50

  // `limit` >= 1 and `window_seconds` >= 1 (values below are raised to 1). Limits so large
  // that L*W > 2^50 even in seconds (over 2^50 / W requests per window, e.g. 3.5e7 per year)
  // are lowered to fit.
  static SlidingWindow make(std::int64_t limit, std::int64_t window_seconds);

  std::int64_t window_ms() const { return window_ticks * tick_ms; }
  std::int64_t ticks(std::int64_t ms) const { return ms / tick_ms; }  // ms >= 0
  std::int64_t window_index(std::int64_t now_ms) const { return ticks(now_ms) / window_ticks; }
  friend bool operator==(const SlidingWindow&, const SlidingWindow&) = default;
};

// The two fixed windows around `now`.
struct WindowCounts {
  std::int64_t previous = 0;  // p
  std::int64_t current = 0;   // c
};

struct WindowDecision {
  bool allowed = false;
  std::int64_t remaining = 0;       // requests left right after this one
  std::int64_t reset_ms = 0;        // until the full limit is available again
  std::int64_t retry_after_ms = 0;  // 0 when allowed
  WindowCounts counts;              // after this request (c incremented when allowed)
};

// Decides one request at `now_ms` (ms since the epoch, >= 0) given the counts before it.
WindowDecision decide(const SlidingWindow& window, WindowCounts before, std::int64_t now_ms);

// The values of `decide` for counts that already include the decision (`allowed` as given):
// what a caller that received (allowed, p, c') from Redis uses to fill its headers.
WindowDecision describe(const SlidingWindow& window, bool allowed, WindowCounts after,
                        std::int64_t now_ms);

// Milliseconds to whole seconds for headers, rounding up (a positive wait is never 0 s).
std::int64_t ceil_seconds(std::int64_t ms);

// Per-process sliding windows keyed by a counter name: the fallback when Redis is down, and
// the reference the unit tests use. Not thread-safe (one per worker). Memory: one small entry
// per active counter; entries whose two windows have both passed are dropped as it grows.
class LocalSlidingWindows {
 public:
  WindowDecision hit(const std::string& counter, const SlidingWindow& window, std::int64_t now_ms);
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::int64_t window_index = 0;
    std::int64_t window_ms = 0;  // a counter's policy may change; the entry restarts then
    WindowCounts counts;
  };
  void prune(std::int64_t now_ms);

  std::unordered_map<std::string, Entry> entries_;
  std::size_t prune_at_ = 1024;
};

}  // namespace keygate::authz

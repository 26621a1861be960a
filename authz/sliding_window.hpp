#pragma once
// Sliding-window counter: the rate-limit arithmetic, pure (no I/O, time passed in), and the
// per-process limiter built on it. The same arithmetic runs in Redis as a Lua script
// (store/redis_rate_counter.cpp); this header is the one place the formula is written down.
//
// THE FORMULA. A window of W ticks is cut into N = 20 fixed sub-windows ("buckets") of
// B = W / N ticks (ticks are 1 ms, or 50 ms for policies too large for ms, see `make`). For a
// limit L at time t:
//
//   j = floor(t / B)            index of the current bucket
//   e = t - j*B                 ticks elapsed in it, 0 <= e < B
//   p = count of bucket j-N     the oldest bucket: only its last B - e ticks still overlap the
//                               sliding window (t - W, t]
//   c = counts of buckets j-N+1 .. j   (wholly inside the sliding window)
//
//   estimate = p * (B - e) / B + c      (the oldest bucket weighted by its overlap)
//   allowed  <=>  estimate + 1 <= L  <=>  p*(B - e) + (c + 1)*B <= L*B   (integers, exact)
//
// With N = 1 this is the classic two-window counter (Cloudflare's). It assumes the oldest
// bucket's requests were spread evenly; with 20 buckets only 1/20 of the window is estimated,
// which keeps bursts and requests at window edges from being misjudged (measured in
// tests/integration/rate_limit_accuracy_test.cpp). An allowed request increments bucket j; a
// rejected one changes nothing. p and c are capped at L (they exceed it only after a limit was
// lowered). `make` keeps L*B <= 2^50, so every term is an integer below 2^53: Lua's doubles
// compute exactly what the C++ computes in int64, and the two agree on every decision.
//
// Derived values (C++ only; the script returns the N+1 counts and the caller derives them):
//   remaining   = max(0, floor((L*B - p*(B - e) - c'*B) / B)), c' = c after this request
//   retry_after = 0 if allowed, else the ticks until the first instant at which a request
//                 would be allowed if no other request came (buckets leaving one by one)
//   reset       = ticks until the estimate decays to 0 (the full limit is available again):
//                 until the newest non-empty bucket has left the window entirely
//
// LEASES (rate_limit.lease). One call may count more than one request: `decide` with
// want > 1 counts g = lease_size(room, want) requests in bucket j at once, where room is how
// many requests fit now (room >= 1 <=> allowed). The worker then admits the g - 1 extra
// requests itself, without Redis, but only while bucket j lasts; what it has not used by then is
// given back to bucket j on its next call for that counter. So every admitted request was
// counted in the bucket in which it was admitted, before it was admitted: the counts never
// exceed what an exact per-request count would hold, and a lease cannot push a window over its
// limit. The cost is the other way: while a lease is outstanding its unused requests count as
// used, so another worker or replica may be refused up to that many requests early, for at
// most one bucket (W/20). A lease takes at most 1/16 of the room, so near the limit every call
// counts one request (g = 1), exactly as without leases. (The limiter asks for a lease only on
// its second call for a counter in the same bucket, so one-off keys hold nothing.)
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace keygate::authz {

// One limit, in ticks. Build it with `make`, which picks the tick and clamps absurd limits.
struct SlidingWindow {
  static constexpr std::int64_t buckets = 20;  // N

  std::int64_t limit = 1;         // L, >= 1
  std::int64_t bucket_ticks = 1;  // B, >= 1; the window is N*B ticks
  std::int64_t tick_ms = 1;       // 1, or 50 (1000 / N) when L*B would exceed 2^50 in ms

  // `limit` >= 1 and `window_seconds` >= 1 (values below are raised to 1). Limits so large
  // that L*B > 2^50 even with 50 ms ticks (over 2^50 / window_seconds requests per window,
  // e.g. 1.3e10 per day) are lowered to fit.
  static SlidingWindow make(std::int64_t limit, std::int64_t window_seconds);

  std::int64_t window_ticks() const { return buckets * bucket_ticks; }
  std::int64_t window_ms() const { return window_ticks() * tick_ms; }
  std::int64_t ticks(std::int64_t ms) const { return ms / tick_ms; }  // ms >= 0
  std::int64_t bucket_index(std::int64_t now_ms) const { return ticks(now_ms) / bucket_ticks; }
  friend bool operator==(const SlidingWindow&, const SlidingWindow&) = default;
};

// The N+1 buckets around `now`: at[0] is bucket j-N (the oldest, partly overlapping),
// at[N] the current bucket j.
struct WindowCounts {
  std::array<std::int64_t, SlidingWindow::buckets + 1> at{};

  std::int64_t previous() const { return at[0]; }  // p
  std::int64_t current() const;                    // c: at[1] + ... + at[N]
  // Counts with p in the oldest bucket and all of c in the current one (tests, fallbacks).
  static WindowCounts of(std::int64_t previous, std::int64_t current);
  friend bool operator==(const WindowCounts&, const WindowCounts&) = default;
};

// The same counter's buckets `later_index - index` buckets later, with no request between.
WindowCounts roll(WindowCounts counts, std::int64_t index, std::int64_t later_index);

struct WindowDecision {
  bool allowed = false;
  std::int64_t granted = 0;         // requests counted: 0 when rejected, else 1 or a lease
  std::int64_t remaining = 0;       // requests left right after this one
  std::int64_t reset_ms = 0;        // until the full limit is available again
  std::int64_t retry_after_ms = 0;  // 0 when allowed
  WindowCounts counts;              // after this request (bucket j incremented when allowed)
};

// A lease takes at most this share of the room (see LEASES above).
constexpr std::int64_t lease_share = 16;

// Requests that fit at `now_ms` given `counts` (0 when the next one would be rejected).
std::int64_t room(const SlidingWindow& window, const WindowCounts& counts, std::int64_t now_ms);

// How many requests one call counts when `room` fit and the caller would take up to `want`:
// 0 when room < 1, else min(want, room / lease_share), at least 1.
std::int64_t lease_size(std::int64_t room, std::int64_t want);

// Decides one request at `now_ms` (ms since the epoch, >= 0) given the counts before it, and
// when it is allowed counts lease_size(room, want) requests in bucket j (`remaining` is then
// what is left after all of them).
WindowDecision decide(const SlidingWindow& window, const WindowCounts& before, std::int64_t now_ms,
                      std::int64_t want = 1);

// The values of `decide` for counts that already include the decision (`allowed` as given):
// what a caller that received (allowed, counts after) from Redis uses to fill its headers.
WindowDecision describe(const SlidingWindow& window, bool allowed, const WindowCounts& after,
                        std::int64_t now_ms);

// Milliseconds to whole seconds for headers, rounding up (a positive wait is never 0 s).
std::int64_t ceil_seconds(std::int64_t ms);

// Per-process sliding windows keyed by a counter name: the fallback when Redis is down, the
// limiter's memory of the last state Redis reported (for answers refused before the rate-limit
// step), and the reference the unit tests use. Not thread-safe (one per worker). Memory: one
// small entry per active counter; entries whose buckets have all left are dropped as it grows.
class LocalSlidingWindows {
 public:
  // Decides and counts one request.
  WindowDecision hit(const std::string& counter, const SlidingWindow& window, std::int64_t now_ms);
  // Stores counts observed elsewhere (Redis) at `now_ms`, replacing what was there.
  void record(const std::string& counter, const SlidingWindow& window, std::int64_t now_ms,
              const WindowCounts& counts);
  // The counts at `now_ms` (all zero for an unknown counter), without counting anything.
  WindowCounts peek(const std::string& counter, const SlidingWindow& window,
                    std::int64_t now_ms) const;
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::int64_t bucket_index = 0;
    std::int64_t window_ms = 0;  // a counter's policy may change; the entry restarts then
    WindowCounts counts;
  };
  Entry& entry_at(const std::string& counter, const SlidingWindow& window, std::int64_t now_ms);
  void prune(std::int64_t now_ms);

  std::unordered_map<std::string, Entry> entries_;
  std::size_t prune_at_ = 1024;
};

}  // namespace keygate::authz

#include "authz/sliding_window.hpp"

#include <algorithm>

namespace keygate::authz {
namespace {

constexpr std::int64_t N = SlidingWindow::buckets;
constexpr std::int64_t max_product = std::int64_t{1} << 50;  // L*B bound, see the header

// Where `now_ms` falls, in ticks: e = elapsed in the current bucket, and the ms already spent
// inside the current tick (durations ending on a tick boundary subtract it).
struct Position {
  std::int64_t elapsed = 0;
  std::int64_t into_tick_ms = 0;
};

Position position(const SlidingWindow& w, std::int64_t now_ms) {
  return {w.ticks(now_ms) % w.bucket_ticks, now_ms % w.tick_ms};
}

std::int64_t ticks_to_ms(const SlidingWindow& w, std::int64_t ticks, const Position& at) {
  return ticks <= 0 ? 0 : ticks * w.tick_ms - at.into_tick_ms;
}

std::int64_t cap(const SlidingWindow& w, std::int64_t count) {
  return std::clamp<std::int64_t>(count, 0, w.limit);
}

// c of the counts `shift` buckets later: at[shift+1] + ... + at[N].
std::int64_t sum_after(const WindowCounts& counts, std::int64_t shift) {
  std::int64_t sum = 0;
  for (std::int64_t i = shift + 1; i <= N; ++i) sum += std::max<std::int64_t>(counts.at[i], 0);
  return sum;
}

// Ticks from e until a request would be allowed, for counts that reject it now: buckets leave
// one by one; within bucket j+k the oldest (at[k]) weighs less as e' grows.
std::int64_t retry_ticks(const SlidingWindow& w, const WindowCounts& counts, std::int64_t e) {
  const std::int64_t B = w.bucket_ticks;
  for (std::int64_t k = 0; k <= N; ++k) {
    const std::int64_t p = cap(w, counts.at[k]);
    const std::int64_t room = w.limit - cap(w, sum_after(counts, k)) - 1;  // p*(B-e') <= room*B
    if (room < 0) continue;
    const std::int64_t from = k == 0 ? e : 0;
    const std::int64_t first = p == 0 ? from : std::max(from, B - room * B / p);
    if (first < B) return k * B + first - e;
  }
  return (N + 1) * B - e;  // every bucket has left
}

}  // namespace

std::int64_t WindowCounts::current() const { return sum_after(*this, 0); }

WindowCounts WindowCounts::of(std::int64_t previous, std::int64_t current) {
  WindowCounts counts;
  counts.at[0] = previous;
  counts.at[N] = current;
  return counts;
}

WindowCounts roll(WindowCounts counts, std::int64_t index, std::int64_t later_index) {
  const std::int64_t shift = later_index - index;
  if (shift <= 0) return counts;
  WindowCounts out;
  for (std::int64_t i = 0; i + shift <= N; ++i) out.at[i] = counts.at[i + shift];
  return out;
}

SlidingWindow SlidingWindow::make(std::int64_t limit, std::int64_t window_seconds) {
  SlidingWindow w;
  w.limit = std::max<std::int64_t>(limit, 1);
  const std::int64_t seconds = std::max<std::int64_t>(window_seconds, 1);
  const std::int64_t bucket_ms = seconds * 1000 / N;  // 50 ms per second of window
  if (w.limit <= max_product / bucket_ms) {
    w.tick_ms = 1;
    w.bucket_ticks = bucket_ms;
  } else {
    w.tick_ms = 1000 / N;
    w.bucket_ticks = seconds;
    w.limit = std::min(w.limit, max_product / seconds);
  }
  return w;
}

std::int64_t room(const SlidingWindow& window, const WindowCounts& counts, std::int64_t now_ms) {
  const std::int64_t B = window.bucket_ticks;
  const std::int64_t e = position(window, now_ms).elapsed;
  const std::int64_t p = cap(window, counts.previous());
  const std::int64_t c = cap(window, counts.current());
  const std::int64_t slack = window.limit * B - p * (B - e) - c * B;  // p*(B-e) + (c+k)*B <= L*B
  return slack <= 0 ? 0 : slack / B;
}

std::int64_t lease_size(std::int64_t room, std::int64_t want) {
  if (room < 1) return 0;
  return std::max<std::int64_t>(1, std::min(want, room / lease_share));
}

WindowDecision decide(const SlidingWindow& window, const WindowCounts& before, std::int64_t now_ms,
                      std::int64_t want) {
  const std::int64_t granted = lease_size(room(window, before, now_ms), want);
  WindowCounts after = before;
  after.at[N] += granted;
  WindowDecision d = describe(window, granted > 0, after, now_ms);
  d.granted = granted;
  return d;
}

WindowDecision describe(const SlidingWindow& window, bool allowed, const WindowCounts& after,
                        std::int64_t now_ms) {
  const std::int64_t B = window.bucket_ticks;
  const Position at = position(window, now_ms);
  const std::int64_t e = at.elapsed;
  const std::int64_t p = cap(window, after.previous());
  const std::int64_t c = cap(window, after.current());

  WindowDecision d;
  d.allowed = allowed;
  d.granted = allowed ? 1 : 0;
  d.counts = after;
  const std::int64_t room = window.limit * B - p * (B - e) - c * B;
  d.remaining = room <= 0 ? 0 : room / B;
  std::int64_t newest = -1;
  for (std::int64_t i = N; i >= 0; --i) {
    if (after.at[i] > 0) {
      newest = i;
      break;
    }
  }
  d.reset_ms = newest < 0 ? 0 : ticks_to_ms(window, (newest + 1) * B - e, at);
  d.retry_after_ms =
      allowed ? 0 : std::max<std::int64_t>(ticks_to_ms(window, retry_ticks(window, after, e), at), 1);
  return d;
}

std::int64_t ceil_seconds(std::int64_t ms) { return ms <= 0 ? 0 : (ms + 999) / 1000; }

LocalSlidingWindows::Entry& LocalSlidingWindows::entry_at(const std::string& counter,
                                                          const SlidingWindow& window,
                                                          std::int64_t now_ms) {
  const std::int64_t index = window.bucket_index(now_ms);
  auto [it, inserted] = entries_.try_emplace(counter);
  Entry& entry = it->second;
  if (inserted || entry.window_ms != window.window_ms()) {
    entry = Entry{index, window.window_ms(), {}};
  } else if (index > entry.bucket_index) {
    entry.counts = roll(entry.counts, entry.bucket_index, index);
    entry.bucket_index = index;
  }  // index < entry.bucket_index: the clock stepped back; keep counting in the newer bucket
  return entry;
}

WindowDecision LocalSlidingWindows::hit(const std::string& counter, const SlidingWindow& window,
                                        std::int64_t now_ms) {
  Entry& entry = entry_at(counter, window, now_ms);
  const WindowDecision d = decide(window, entry.counts, now_ms);
  if (d.allowed) entry.counts = d.counts;
  if (entries_.size() >= prune_at_) prune(now_ms);
  return d;
}

void LocalSlidingWindows::record(const std::string& counter, const SlidingWindow& window,
                                 std::int64_t now_ms, const WindowCounts& counts) {
  entries_[counter] = Entry{window.bucket_index(now_ms), window.window_ms(), counts};
  if (entries_.size() >= prune_at_) prune(now_ms);
}

WindowCounts LocalSlidingWindows::peek(const std::string& counter, const SlidingWindow& window,
                                       std::int64_t now_ms) const {
  const auto it = entries_.find(counter);
  if (it == entries_.end() || it->second.window_ms != window.window_ms()) return {};
  return roll(it->second.counts, it->second.bucket_index, window.bucket_index(now_ms));
}

void LocalSlidingWindows::prune(std::int64_t now_ms) {
  std::erase_if(entries_, [now_ms](const auto& item) {
    const Entry& entry = item.second;
    return now_ms / (entry.window_ms / N) > entry.bucket_index + N;
  });
  prune_at_ = std::max<std::size_t>(1024, 2 * entries_.size());
}

}  // namespace keygate::authz

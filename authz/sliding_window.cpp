#include "authz/sliding_window.hpp"

#include <algorithm>

namespace keygate::authz {
namespace {

constexpr std::int64_t max_product = std::int64_t{1} << 50;  // L*W bound, see the header

// Where `now_ms` falls, in ticks: e = elapsed in the current window, and the ms already spent
// inside the current tick (durations ending on a tick boundary subtract it).
struct Position {
  std::int64_t elapsed = 0;
  std::int64_t into_tick_ms = 0;
};

Position position(const SlidingWindow& w, std::int64_t now_ms) {
  return {w.ticks(now_ms) % w.window_ticks, now_ms % w.tick_ms};
}

std::int64_t ticks_to_ms(const SlidingWindow& w, std::int64_t ticks, const Position& at) {
  return ticks <= 0 ? 0 : ticks * w.tick_ms - at.into_tick_ms;
}

WindowCounts capped(const SlidingWindow& w, WindowCounts counts) {
  return {std::clamp<std::int64_t>(counts.previous, 0, w.limit),
          std::clamp<std::int64_t>(counts.current, 0, w.limit)};
}

// Ticks from e until a request would be allowed, for counts that reject it now.
std::int64_t retry_ticks(const SlidingWindow& w, WindowCounts counts, std::int64_t e) {
  const std::int64_t W = w.window_ticks;
  const std::int64_t L = w.limit;
  const std::int64_t room = L - counts.current - 1;  // allowed once p*(W-e') <= room*W
  if (room >= 0 && counts.previous > 0) {
    const std::int64_t first = W - room * W / counts.previous;
    if (first < W) return first - e;
  }
  // Not in this window: in the next one p' = c and c' = 0, allowed once c*(W-e') <= (L-1)*W.
  if (counts.current == 0) return W - e;
  const std::int64_t next = W - (L - 1) * W / counts.current;
  return (W - e) + next;  // next == W: the window after, where p'' = 0
}

}  // namespace

SlidingWindow SlidingWindow::make(std::int64_t limit, std::int64_t window_seconds) {
  SlidingWindow w;
  w.limit = std::max<std::int64_t>(limit, 1);
  const std::int64_t seconds = std::max<std::int64_t>(window_seconds, 1);
  if (w.limit <= max_product / (seconds * 1000)) {
    w.tick_ms = 1;
    w.window_ticks = seconds * 1000;
  } else {
    w.tick_ms = 1000;
    w.window_ticks = seconds;
    w.limit = std::min(w.limit, max_product / seconds);
  }
  return w;
}

WindowDecision decide(const SlidingWindow& window, WindowCounts before, std::int64_t now_ms) {
  const WindowCounts counts = capped(window, before);
  const std::int64_t W = window.window_ticks;
  const std::int64_t e = position(window, now_ms).elapsed;
  const bool allowed =
      counts.previous * (W - e) + (counts.current + 1) * W <= window.limit * W;
  WindowCounts after = counts;
  if (allowed) ++after.current;
  return describe(window, allowed, after, now_ms);
}

WindowDecision describe(const SlidingWindow& window, bool allowed, WindowCounts after,
                        std::int64_t now_ms) {
  const WindowCounts counts = capped(window, after);
  const std::int64_t W = window.window_ticks;
  const Position at = position(window, now_ms);
  const std::int64_t e = at.elapsed;

  WindowDecision d;
  d.allowed = allowed;
  d.counts = after;
  const std::int64_t room = window.limit * W - counts.previous * (W - e) - counts.current * W;
  d.remaining = room <= 0 ? 0 : room / W;
  const std::int64_t reset = counts.current > 0 ? 2 * W - e : counts.previous > 0 ? W - e : 0;
  d.reset_ms = ticks_to_ms(window, reset, at);
  d.retry_after_ms = allowed ? 0 : std::max<std::int64_t>(ticks_to_ms(window, retry_ticks(window, counts, e), at), 1);
  return d;
}

std::int64_t ceil_seconds(std::int64_t ms) { return ms <= 0 ? 0 : (ms + 999) / 1000; }

WindowDecision LocalSlidingWindows::hit(const std::string& counter, const SlidingWindow& window,
                                        std::int64_t now_ms) {
  const std::int64_t index = window.window_index(now_ms);
  auto [it, inserted] = entries_.try_emplace(counter);
  Entry& entry = it->second;
  if (inserted || entry.window_ms != window.window_ms()) {
    entry = Entry{index, window.window_ms(), {}};
  } else if (index == entry.window_index + 1) {
    entry.counts = {entry.counts.current, 0};
    entry.window_index = index;
  } else if (index > entry.window_index + 1) {
    entry.counts = {};
    entry.window_index = index;
  }  // index < entry.window_index: the clock stepped back; keep counting in the newer window
  const WindowDecision d = decide(window, entry.counts, now_ms);
  if (d.allowed) entry.counts = d.counts;
  if (entries_.size() >= prune_at_) prune(now_ms);
  return d;
}

void LocalSlidingWindows::prune(std::int64_t now_ms) {
  std::erase_if(entries_, [now_ms](const auto& item) {
    const Entry& entry = item.second;
    return now_ms / entry.window_ms >= entry.window_index + 2;
  });
  prune_at_ = std::max<std::size_t>(1024, 2 * entries_.size());
}

}  // namespace keygate::authz

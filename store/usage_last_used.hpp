#pragma once
// last_used_at coalescing (pure, time injected): the latest request of every key seen since
// api_keys was last updated, so the usage writer sets last_used_at for all of them in one
// statement at most once per interval, never once per request. A failed update keeps the
// times; they merge with newer ones and go next time.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace keygate::store {

class LastUsedTimes {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  // Which key ids rows() keeps: uuids (keygate's api_keys), or any (a custom key table, whose
  // id column PostgreSQL converts them to).
  enum class KeyIds { uuid, any };

  explicit LastUsedTimes(std::chrono::milliseconds interval, KeyIds ids = KeyIds::uuid)
      : interval_(interval), ids_(ids) {}

  void start(SteadyTime now) { sent_at_ = now; }  // the first interval runs from here
  // A request of `key_id` that started at `unix_us` (microseconds since the epoch).
  void note(std::string_view key_id, std::int64_t unix_us);
  bool empty() const { return latest_.empty(); }
  std::size_t size() const { return latest_.size(); }

  bool due(SteadyTime now) const { return !empty() && now - sent_at_ >= interval_; }
  SteadyTime due_at() const { return sent_at_ + interval_; }

  // The update's rows, in no particular order: key ids (uuids unless KeyIds::any; never
  // empty), and their latest request as RFC 3339 UTC text (for unnest($1::uuid[],
  // $2::timestamptz[])).
  struct Rows {
    std::vector<std::string> key_ids;
    std::vector<std::string> times;
  };
  Rows rows() const;
  void sent(SteadyTime now) {  // the update succeeded
    latest_.clear();
    sent_at_ = now;
  }

 private:
  struct TextHash {  // lets latest_ be searched by string_view, with no string made
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::chrono::milliseconds interval_;
  KeyIds ids_;
  SteadyTime sent_at_{};
  std::unordered_map<std::string, std::int64_t, TextHash, std::equal_to<>> latest_;  // key id -> us
};

}  // namespace keygate::store

#include "store/usage_last_used.hpp"

#include <algorithm>

#include "core/time_format.hpp"
#include "store/usage_encoding.hpp"

namespace keygate::store {

void LastUsedTimes::note(std::string_view key_id, std::int64_t unix_us) {
  if (auto it = latest_.find(key_id); it != latest_.end()) {
    it->second = std::max(it->second, unix_us);
  } else {
    latest_.emplace(std::string(key_id), unix_us);
  }
}

LastUsedTimes::Rows LastUsedTimes::rows() const {
  Rows rows;
  rows.key_ids.reserve(latest_.size());
  rows.times.reserve(latest_.size());
  for (const auto& [id, us] : latest_) {
    if (ids_ == KeyIds::uuid ? !parse_usage_key_id(id) : id.empty()) continue;
    rows.key_ids.push_back(id);
    std::string when;
    core::append_utc_micros(when, core::SystemTime(std::chrono::microseconds(us)));
    rows.times.push_back(std::move(when));
  }
  return rows;
}

}  // namespace keygate::store

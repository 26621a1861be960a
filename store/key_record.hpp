#pragma once
// What keygate knows about one API key: the row of api_keys that the request path needs.
// Shared by store/ (which loads and caches it) and authz/ (which decides on it).
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/ip_network.hpp"

namespace keygate::store {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// SHA-256 or HMAC-SHA-256 of the full key; the only form in which a key is ever stored.
using KeyHash = std::array<std::uint8_t, 32>;

struct KeyRecord {
  std::string id;  // uuid, text form
  std::string owner_type;
  std::string owner_id;
  std::string name;
  KeyHash key_hash{};
  std::vector<std::string> scopes;
  std::vector<core::IpNetwork> allowed_ips;    // empty: any address
  std::optional<int> rate_limit;         // requests per window; empty: the configured default
  std::optional<int> window_seconds;
  std::optional<std::int64_t> quota;     // total requests; empty: unlimited
  std::optional<int> quota_period_seconds;  // quota refills every period; empty: never
  bool is_active = true;
  std::optional<TimePoint> expires_at;
  std::optional<TimePoint> revoked_at;
};

using KeyRecordPtr = std::shared_ptr<const KeyRecord>;

}  // namespace keygate::store

#pragma once
// Which limit a request counts against, and the name of its shared counter: pure functions of
// the key, the matched route and the configured default (no I/O, no clock).
#include <cstdint>
#include <string>
#include <string_view>

#include "authz/routes.hpp"
#include "core/duration.hpp"
#include "store/key_record.hpp"

namespace keygate::authz {

struct RateLimitPolicy {
  long long limit = 0;
  int window_seconds = 0;
  enum class Source { route, key, default_limit } source = Source::default_limit;
  friend bool operator==(const RateLimitPolicy&, const RateLimitPolicy&) = default;
};

// Route's limit, else the key's (a key's rate_limit without window_seconds uses the default
// window; non-positive values count as unset), else the default.
RateLimitPolicy choose_policy(const store::KeyRecord& key, const Route* route,
                              const core::RateLimitSpec& default_limit);

// The counter a request is counted in: "kg:rl:{<key id>}:<window>s", or, for a route's own
// limit, "kg:rl:{<key id>}:r<hash of the route's pattern and methods>:<window>s". The window is
// in the name so that a changed window starts fresh counters. `key_namespace` goes before the
// id: a custom key table's ids (1, 2, 3...) must not share counters with another table's.
std::string counter_name(const store::KeyRecord& key, const Route* route,
                         const RateLimitPolicy& policy, std::string_view key_namespace = {});

// FNV-1a, 64 bits: stable across processes and builds (std::hash is neither), so every replica
// names a route's counter alike.
inline constexpr std::uint64_t fnv1a_basis = 14695981039346656037ull;
std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes);

}  // namespace keygate::authz

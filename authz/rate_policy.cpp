#include "authz/rate_policy.hpp"

#include <cstdio>

namespace keygate::authz {

std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

RateLimitPolicy choose_policy(const store::KeyRecord& key, const Route* route,
                              const core::RateLimitSpec& default_limit) {
  if (route != nullptr && route->rate_limit) {
    return {route->rate_limit->limit, route->rate_limit->window_seconds,
            RateLimitPolicy::Source::route};
  }
  if (key.rate_limit && *key.rate_limit > 0) {
    const int window = key.window_seconds && *key.window_seconds > 0 ? *key.window_seconds
                                                                     : default_limit.window_seconds;
    return {*key.rate_limit, window, RateLimitPolicy::Source::key};
  }
  return {default_limit.limit, default_limit.window_seconds, RateLimitPolicy::Source::default_limit};
}

std::string counter_name(const store::KeyRecord& key, const Route* route,
                         const RateLimitPolicy& policy, std::string_view key_namespace) {
  std::string name = "kg:rl:{";
  name += key_namespace;
  name += key.id + "}:";
  if (policy.source == RateLimitPolicy::Source::route && route != nullptr) {
    std::uint64_t h = fnv1a(fnv1a_basis, route->pattern);
    for (const std::string& method : route->methods) h = fnv1a(fnv1a(h, " "), method);
    char hex[24];
    std::snprintf(hex, sizeof hex, "r%016llx:", static_cast<unsigned long long>(h));
    name += hex;
  }
  name += std::to_string(policy.window_seconds) + "s";
  return name;
}

}  // namespace keygate::authz

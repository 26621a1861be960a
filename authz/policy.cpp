#include "authz/policy.hpp"

#include <algorithm>

namespace keygate::authz {

bool scope_grants(std::string_view held, std::string_view required) {
  if (held == required || held == "*") return true;
  if (held.size() >= 2 && held.ends_with(":*")) {
    const std::string_view name_space = held.substr(0, held.size() - 1);  // keeps the ':'
    return required.size() > name_space.size() && required.starts_with(name_space);
  }
  return false;
}

namespace {

bool has_scope(const store::KeyRecord& key, std::string_view required) {
  return std::any_of(key.scopes.begin(), key.scopes.end(),
                     [required](const std::string& held) { return scope_grants(held, required); });
}

bool address_allowed(const store::KeyRecord& key, const core::IpAddress& client) {
  if (key.allowed_ips.empty()) return true;
  return std::any_of(
      key.allowed_ips.begin(), key.allowed_ips.end(),
      [&client](const core::IpNetwork& network) { return network.contains(client); });
}

}  // namespace

Decision decide(const store::KeyRecord& key, const Route* route, const core::IpAddress& client,
                store::TimePoint now) {
  if (!key.is_active || key.revoked_at) return Decision::deny(DenyReason::revoked_key);
  if (key.expires_at && *key.expires_at <= now) return Decision::deny(DenyReason::expired_key);
  if (!address_allowed(key, client)) return Decision::deny(DenyReason::ip_not_allowed);
  if (route != nullptr) {
    for (const std::string& required : route->scopes) {
      if (!has_scope(key, required)) return Decision::deny(DenyReason::insufficient_scope);
    }
  }
  return Decision::allow();
}

}  // namespace keygate::authz

#include "store/owner_scope.hpp"

namespace keygate::store {

OwnerScope OwnerScope::all_owners() { return OwnerScope("*"); }

std::optional<OwnerScope> OwnerScope::owner(std::string_view type, std::string_view id) {
  if (type.empty() || id.empty()) return std::nullopt;
  if (type.find(':') != std::string_view::npos) return std::nullopt;
  if (type.find('\0') != std::string_view::npos || id.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string setting;
  setting.reserve(type.size() + 1 + id.size());
  setting.append(type).append(":").append(id);
  return OwnerScope(std::move(setting));
}

std::optional<OwnerScope> OwnerScope::parse(std::string_view setting) {
  if (setting == "*") return all_owners();
  const auto colon = setting.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return owner(setting.substr(0, colon), setting.substr(colon + 1));
}

}  // namespace keygate::store

#pragma once
// Whose keys one transaction of the key-management API may touch: every owner's (an operator)
// or one owner's. Its setting() is the value of PostgreSQL's transaction-local keygate.owner,
// on which the row-level security policies of migration 0005 are keyed: "*" or "type:id".
#include <optional>
#include <string>
#include <string_view>

namespace keygate::store {

class OwnerScope {
 public:
  // An operator: every owner's rows.
  static OwnerScope all_owners();
  // One owner's rows. nullopt when type or id is empty, when type holds a ':' ("a:b" + "c" and
  // "a" + "b:c" would read the same; the id may hold any), or when either holds a NUL (libpq
  // would cut the value there).
  static std::optional<OwnerScope> owner(std::string_view type, std::string_view id);
  // The inverse of setting(): "*" or "type:id" (split at the first ':'), else nullopt.
  static std::optional<OwnerScope> parse(std::string_view setting);

  bool is_all_owners() const { return setting_ == "*"; }
  const std::string& setting() const { return setting_; }

  friend bool operator==(const OwnerScope&, const OwnerScope&) = default;

 private:
  explicit OwnerScope(std::string setting) : setting_(std::move(setting)) {}
  std::string setting_;
};

}  // namespace keygate::store

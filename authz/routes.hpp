#pragma once
// Which rule applies to a request: the configured routes, tried in order, first match wins.
// No match means no route rule: any valid key passes.
//
// Patterns are matched against the normalized path (authz/request_path.hpp), never the raw one:
// - No '*' or '?': a prefix that ends on a segment boundary. "/inventory" matches "/inventory",
//   "/inventory/" and "/inventory/x", not "/inventoryx". "/" matches every path.
// - Otherwise a glob over the whole path: '*' matches any run of characters, '/' included
//   ("/v1/*/items" matches "/v1/a/b/items"), '?' matches exactly one character. A trailing
//   "/*" also matches the bare prefix: "/public/*" matches "/public" and "/public/x/y".
// Methods compare exactly (upper case); HEAD is not implied by GET. Empty = any method.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.hpp"

namespace keygate::authz {

// Every member has a default, so designated initializers may name only some of them
// (-Wmissing-field-initializers stays quiet).
struct Route {
  std::string pattern{};                      // "/inventory/*" glob, or "/inventory" prefix
  std::vector<std::string> methods{};         // upper case; empty = any
  std::vector<std::string> scopes{};          // all required
  bool is_public = false;                     // no key needed
  std::optional<core::RateLimitSpec> rate_limit{};  // overrides the key's limit on this route
};

class RouteTable {
 public:
  RouteTable() = default;
  // Method names are upper-cased here. Throws std::invalid_argument for a pattern that does not
  // start with '/' (a startup error: the config loader reports it first).
  explicit RouteTable(std::vector<Route> routes);

  // The first route matching both; nullptr if none. Allocation-free.
  const Route* match(std::string_view method, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct Matcher {
    bool is_glob = false;
    // Glob patterns ending in "/*": length of the bare prefix it also matches; else npos.
    std::size_t bare_length = std::string::npos;
  };
  std::vector<Route> routes_;
  std::vector<Matcher> matchers_;  // parallel to routes_
};

// Exposed for tests: the two pattern kinds.
bool prefix_matches(std::string_view prefix, std::string_view path);
bool glob_matches(std::string_view pattern, std::string_view path);

}  // namespace keygate::authz

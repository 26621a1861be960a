#pragma once
// Which rule applies to a request: the configured routes, tried in order; the first route
// whose pattern matches the path and whose methods include the request's method wins. A path
// that some route matches, with a method none of them lists, is refused (405 with Allow); a
// path no route matches is what routes_default says (authz/key_authorizer.hpp).
//
// Patterns are matched against the normalized path (authz/request_path.hpp), never the raw one:
// - No '*' or '?': a prefix that ends on a segment boundary. "/inventory" matches "/inventory",
//   "/inventory/" and "/inventory/x", not "/inventoryx". "/" matches every path.
// - Otherwise a glob over the whole path: '*' matches any run of characters, '/' included
//   ("/v1/*/items" matches "/v1/a/b/items"), '?' matches exactly one character. A trailing
//   "/*" also matches the bare prefix: "/public/*" matches "/public" and "/public/x/y".
// Methods compare exactly, as RFC 9110 9.1 says (case-sensitive: "get" is not GET); HEAD is not
// implied by GET. Empty = any method.
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
  std::vector<std::string> methods{};         // exact tokens; empty = any
  std::vector<std::string> scopes{};          // all required
  bool is_public = false;                     // no key needed
  std::optional<core::RateLimitSpec> rate_limit{};  // overrides the key's limit on this route
};

struct RouteMatch {
  enum class Kind {
    route,               // `route` applies
    method_not_allowed,  // routes match the path, none lists the method
    no_route,            // no route matches the path
  };
  Kind kind = Kind::no_route;
  const Route* route = nullptr;  // set for Kind::route
};

class RouteTable {
 public:
  RouteTable() = default;
  // Throws std::invalid_argument for a pattern that does not start with '/' (a startup error:
  // the config loader reports it first).
  explicit RouteTable(std::vector<Route> routes);

  // Allocation-free.
  RouteMatch match(std::string_view method, std::string_view path) const;
  // For a 405's Allow header: the methods listed by every route matching `path`, in route
  // order without repeats, ", "-separated.
  std::string allowed_methods(std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct Matcher {
    bool is_glob = false;
    // Glob patterns ending in "/*": length of the bare prefix it also matches; else npos.
    std::size_t bare_length = std::string::npos;
  };
  bool path_matches(std::size_t index, std::string_view path) const;

  std::vector<Route> routes_;
  std::vector<Matcher> matchers_;  // parallel to routes_
};

// Exposed for tests: the two pattern kinds.
bool prefix_matches(std::string_view prefix, std::string_view path);
bool glob_matches(std::string_view pattern, std::string_view path);

}  // namespace keygate::authz

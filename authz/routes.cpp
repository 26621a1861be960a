#include "authz/routes.hpp"

#include <algorithm>
#include <stdexcept>

namespace keygate::authz {

bool prefix_matches(std::string_view prefix, std::string_view path) {
  if (!path.starts_with(prefix)) return false;
  return path.size() == prefix.size() || prefix.ends_with('/') || path[prefix.size()] == '/';
}

// Iterative matching with one backtrack point (the last '*'): linear in practice, never
// exponential, no recursion.
bool glob_matches(std::string_view pattern, std::string_view path) {
  std::size_t p = 0, s = 0;
  std::size_t star = std::string_view::npos, star_s = 0;
  while (s < path.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == path[s])) {
      ++p;
      ++s;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_s = s;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      s = ++star_s;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  matchers_.reserve(routes_.size());
  for (Route& route : routes_) {
    if (!route.pattern.starts_with('/')) {
      throw std::invalid_argument("route pattern must start with '/': " + route.pattern);
    }
    Matcher matcher;
    matcher.is_glob = route.pattern.find_first_of("*?") != std::string::npos;
    if (matcher.is_glob && route.pattern.size() > 2 && route.pattern.ends_with("/*")) {
      matcher.bare_length = route.pattern.size() - 2;
    }
    matchers_.push_back(matcher);
  }
}

bool RouteTable::path_matches(std::size_t index, std::string_view path) const {
  const std::string_view pattern = routes_[index].pattern;
  const Matcher& matcher = matchers_[index];
  if (!matcher.is_glob) return prefix_matches(pattern, path);
  return glob_matches(pattern, path) ||
         (matcher.bare_length != std::string::npos &&
          glob_matches(pattern.substr(0, matcher.bare_length), path));
}

RouteMatch RouteTable::match(std::string_view method, std::string_view path) const {
  // The method first: a string compare is cheaper than a glob.
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const Route& route = routes_[i];
    const bool method_listed =
        route.methods.empty() ||
        std::find(route.methods.begin(), route.methods.end(), method) != route.methods.end();
    if (method_listed && path_matches(i, path)) return {RouteMatch::Kind::route, &route};
  }
  // Not matched: only now does it matter whether some route has the path at all.
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    if (path_matches(i, path)) return {RouteMatch::Kind::method_not_allowed, nullptr};
  }
  return {};
}

std::string RouteTable::allowed_methods(std::string_view path) const {
  std::vector<std::string_view> methods;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    if (!path_matches(i, path)) continue;
    for (const std::string& method : routes_[i].methods) {
      if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
        methods.push_back(method);
      }
    }
  }
  std::string allow;
  for (const std::string_view method : methods) {
    if (!allow.empty()) allow += ", ";
    allow += method;
  }
  return allow;
}

}  // namespace keygate::authz

#include "authz/routes.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/text.hpp"

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
    for (std::string& method : route.methods) {
      std::transform(method.begin(), method.end(), method.begin(), core::ascii_upper);
    }
    Matcher matcher;
    matcher.is_glob = route.pattern.find_first_of("*?") != std::string::npos;
    if (matcher.is_glob && route.pattern.size() > 2 && route.pattern.ends_with("/*")) {
      matcher.bare_length = route.pattern.size() - 2;
    }
    matchers_.push_back(matcher);
  }
}

const Route* RouteTable::match(std::string_view method, std::string_view path) const {
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const Route& route = routes_[i];
    const Matcher& matcher = matchers_[i];
    if (!route.methods.empty() &&
        std::find(route.methods.begin(), route.methods.end(), method) == route.methods.end()) {
      continue;
    }
    const std::string_view pattern = route.pattern;
    bool matched = false;
    if (!matcher.is_glob) {
      matched = prefix_matches(pattern, path);
    } else {
      matched = glob_matches(pattern, path) ||
                (matcher.bare_length != std::string::npos &&
                 glob_matches(pattern.substr(0, matcher.bare_length), path));
    }
    if (matched) return &route;
  }
  return nullptr;
}

}  // namespace keygate::authz

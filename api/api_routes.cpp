#include "api/api_routes.hpp"

#include "store/metrics.hpp"

namespace keygate::api {

static_assert(store::api_endpoint_labels.size() == endpoint_count);
static_assert(static_cast<std::size_t>(Endpoint::audit) == 7 && static_cast<std::size_t>(Endpoint::key_usage) == 6 &&
                  static_cast<std::size_t>(Endpoint::leaks) == 8,
              "store::api_endpoint_labels follows Endpoint's order");

namespace {

RouteMatch with(Endpoint endpoint, std::string_view method, std::string_view allow, std::string id = {}) {
  RouteMatch m;
  m.endpoint = endpoint;
  m.id = std::move(id);
  m.allow = allow;
  // Allow lists one or two methods, comma-separated; HEAD is not offered (JSON answers only).
  for (std::size_t start = 0; start <= allow.size();) {
    const std::size_t comma = allow.find(", ", start);
    const std::string_view one = allow.substr(start, comma == std::string_view::npos ? allow.npos : comma - start);
    if (one == method) m.method_allowed = true;
    if (comma == std::string_view::npos) break;
    start = comma + 2;
  }
  return m;
}

// An id segment: non-empty, no '/', bounded (a uuid is 36 characters).
bool is_segment(std::string_view s) { return !s.empty() && s.size() <= 64 && s.find('/') == std::string_view::npos; }

}  // namespace

RouteMatch match_route(std::string_view method, std::string_view path) {
  if (path == "/v1/openapi.json") return with(Endpoint::openapi, method, "GET");
  if (path == "/v1/verify") return with(Endpoint::verify, method, "POST");
  if (path == "/v1/keys") return with(Endpoint::keys, method, "GET, POST");
  if (path == "/v1/audit") return with(Endpoint::audit, method, "GET");
  if (path == "/v1/leaks") return with(Endpoint::leaks, method, "POST");
  constexpr std::string_view keys_prefix = "/v1/keys/";
  if (!path.starts_with(keys_prefix)) return {};
  std::string_view rest = path.substr(keys_prefix.size());
  const std::size_t slash = rest.find('/');
  const std::string_view id = rest.substr(0, slash);
  if (!is_segment(id)) return {};
  if (slash == std::string_view::npos) return with(Endpoint::key, method, "GET, PATCH, DELETE", std::string(id));
  const std::string_view action = rest.substr(slash + 1);
  if (action == "revoke") return with(Endpoint::key_revoke, method, "POST", std::string(id));
  if (action == "rotate") return with(Endpoint::key_rotate, method, "POST", std::string(id));
  if (action == "usage") return with(Endpoint::key_usage, method, "GET", std::string(id));
  return {};
}

}  // namespace keygate::api
